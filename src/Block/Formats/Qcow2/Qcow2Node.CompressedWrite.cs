using System.Buffers;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Compressed writes (<see cref="WriteFlags.Compressed"/>), as QEMU's qcow2 does them: whole guest
/// clusters only (a partial one only at the end of the image, padded with zeroes), each compressed on
/// its own with the image's compression type and packed into host space at byte granularity. A cluster
/// that does not shrink below one cluster is written as a normal cluster. A cluster that already has a
/// host offset (data, compressed, or preallocated zero) is not overwritten: EIO, as QEMU 7.2.
/// Every host cluster a compressed cluster touches holds one reference for it.
/// Order per cluster: host bytes reserved and refcounts raised in the cache → data written → L2 entry
/// in the cache (write-back writes refcounts, flushes, then L2 tables).
/// </summary>
public sealed partial class Qcow2Node
{
    /// <summary>
    /// Where the next compressed cluster may start inside a partly used host cluster (QEMU's
    /// free_byte_offset), or 0. Reset when that host cluster is freed.
    /// </summary>
    private long _freeByteOffset;

    private async ValueTask WriteCompressedAsync(long offset, ReadOnlyMemory<byte> buffer)
    {
        if (_crypto is not null)
        {
            // QEMU's qcow2 would store the compressed cluster unencrypted; qemu-img refuses that, and so do we.
            throw BlockException.NotSupported($"Compression and encryption not supported at the same time (node '{NodeName}')");
        }

        if (HasExternalData)
        {
            throw BlockException.NotSupported($"qcow2: compressed writes are not supported with an external data file ('{FileName}')");
        }

        var partialTail = (buffer.Length & (_clusterSize - 1)) != 0 && offset + buffer.Length != Length;
        if ((offset & (_clusterSize - 1)) != 0 || partialTail)
        {
            throw BlockException.Invalid($"qcow2: compressed writes must cover whole clusters ({_clusterSize} bytes)");
        }

        while (buffer.Length > 0)
        {
            var n = Math.Min(buffer.Length, _clusterSize);
            await WriteCompressedClusterAsync(offset, buffer[..n]).ConfigureAwait(false);
            offset += n;
            buffer = buffer[n..];
        }
    }

    private async ValueTask WriteCompressedClusterAsync(long guest, ReadOnlyMemory<byte> data)
    {
        var input = ArrayPool<byte>.Shared.Rent(_clusterSize);
        var output = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            data.Span.CopyTo(input);
            input.AsSpan(data.Length, _clusterSize - data.Length).Clear();

            // Less than a cluster, or it is not worth it (QEMU compresses into cluster_size - 1 bytes).
            var size = Qcow2Compression.Compress(_header.CompressionType, input.AsSpan(0, _clusterSize), output.AsSpan(0, _clusterSize - 1));
            if (size < 0)
            {
                await WriteChunkAsync(guest, data).ConfigureAwait(false);
                return;
            }

            using var range = await _clusterLocks.AcquireAsync(guest, _clusterSize).ConfigureAwait(false);
            var host = await ReserveCompressedAsync(guest, size).ConfigureAwait(false);
            try
            {
                await _file.WriteAsync(host, output.AsMemory(0, size)).ConfigureAwait(false);
            }
            catch
            {
                var (first, count) = ClustersTouched(host, size);
                await ReleaseAllocationAsync(first, count).ConfigureAwait(false);
                throw;
            }

            await MapCompressedAsync(guest, CompressedEntry(host, size)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    /// <summary>Checks the cluster may take compressed data and reserves <paramref name="size"/> host bytes for it.</summary>
    private async ValueTask<long> ReserveCompressedAsync(long guest, int size)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            CheckNotCorrupt();
            var table = await GetL2ForReadAsync(guest).ConfigureAwait(false);
            var entry = table is null ? 0 : ReadL2Entry(table, L2Index(guest));
            if ((entry & Qcow2Format.OffsetMask) != 0)
            {
                throw BlockException.Io($"qcow2: compressed write to allocated cluster at guest offset 0x{guest:x} of '{FileName}'");
            }

            return await AllocateBytesLockedAsync(size).ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>Points the guest cluster at its compressed data; the old entry held no host cluster.</summary>
    private async ValueTask MapCompressedAsync(long guest, ulong entry)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var table = await GetWritableL2Async(guest).ConfigureAwait(false);

            // Compressed clusters never carry the copied flag; with extended L2 the bitmap is unused.
            WriteL2Entry(table, L2Index(guest), entry, 0);
            await WriteBackIfFullLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>The compressed cluster descriptor: host offset in the low x bits, additional 512-byte sectors above.</summary>
    private ulong CompressedEntry(long host, int size)
    {
        var x = 62 - (_clusterBits - 8);
        var extraSectors = ((host + size - 1) / Qcow2Format.CompressedSectorSize) - (host / Qcow2Format.CompressedSectorSize);
        return Qcow2Format.FlagCompressed | ((ulong)extraSectors << x) | (ulong)host;
    }

    /// <summary>
    /// Reserves <paramref name="size"/> (at most one cluster) contiguous host bytes, continuing in the
    /// partly used cluster of the previous compressed write when it has room or the next free cluster
    /// follows it; every host cluster the bytes touch gets one more reference (QEMU's qcow2_alloc_bytes).
    /// </summary>
    private async ValueTask<long> AllocateBytesLockedAsync(int size)
    {
        var offset = _freeByteOffset;
        if (offset != 0)
        {
            var rc = await GetRefcountAsync(offset >> _clusterBits).ConfigureAwait(false);
            if (rc == 0 || rc == MaxRefcount)
            {
                offset = 0;
            }
        }

        var room = offset == 0 ? 0 : _clusterSize - (offset & (_clusterSize - 1));
        if (offset != 0 && room >= size)
        {
            await IncrementRefcountLockedAsync(offset).ConfigureAwait(false);
        }
        else
        {
            var fresh = await AllocateClustersLockedAsync(1).ConfigureAwait(false);
            if (offset != 0 && AlignUp(offset, _clusterSize) == fresh)
            {
                await IncrementRefcountLockedAsync(offset).ConfigureAwait(false);
            }
            else
            {
                offset = fresh;
            }
        }

        var limit = 1L << (62 - (_clusterBits - 8));
        if (offset + size > limit)
        {
            var (first, count) = ClustersTouched(offset, size);
            await FreeClustersLockedAsync(first, count).ConfigureAwait(false);
            throw new BlockException(Errno.EFBIG, $"qcow2: compressed cluster at host offset 0x{offset:x} beyond what its descriptor can address");
        }

        var next = offset + size;
        _freeByteOffset = (next & (_clusterSize - 1)) == 0 ? 0 : next;
        return offset;
    }

    /// <summary>The host clusters that bytes [host, host+size) touch.</summary>
    private (long First, int Count) ClustersTouched(long host, int size)
    {
        var first = host & ClusterOffsetMask;
        return (first, (int)((AlignUp(host + size, _clusterSize) - first) >> _clusterBits));
    }

    /// <summary>Called when a host cluster's refcount drops to zero: compressed data must not continue in it.</summary>
    private void ForgetFreedCluster(long hostCluster)
    {
        if (_freeByteOffset != 0 && (_freeByteOffset & ClusterOffsetMask) == hostCluster)
        {
            _freeByteOffset = 0;
        }
    }
}
