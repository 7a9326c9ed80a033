using System.Buffers;
using System.Runtime.CompilerServices;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Reads (through the backing node where this layer is unallocated) and block status.</summary>
public sealed partial class Qcow2Node
{
    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) => ReadGuestAsync(_l1, offset, buffer);

    /// <summary>Reads guest bytes as mapped by <paramref name="l1"/>; runs of one mapping are read in one request.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadGuestAsync(ulong[] l1, long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var m = await GetMappingAsync(l1, offset, buffer.Length).ConfigureAwait(false);
            var n = (int)m.Length;
            var part = buffer[..n];
            switch (m.Kind)
            {
                case Qcow2ClusterKind.Unallocated:
                    await ReadBackingAsync(offset, part).ConfigureAwait(false);
                    break;
                case Qcow2ClusterKind.Zero:
                    part.Span.Clear();
                    break;
                case Qcow2ClusterKind.Normal:
                    await ReadHostAsync(m.HostOffset, offset, part).ConfigureAwait(false);
                    break;
                case Qcow2ClusterKind.Compressed:
                    await ReadCompressedAsync(m.Entry, (int)(offset & (_clusterSize - 1)), part).ConfigureAwait(false);
                    break;
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>Backing data, with zeroes past the end of the backing node (or without one).</summary>
    private async ValueTask ReadBackingAsync(long offset, Memory<byte> buffer)
    {
        var backing = BackingChild?.Node;
        var n = backing is null ? 0 : (int)Math.Clamp(backing.Length - offset, 0, buffer.Length);
        if (n > 0)
        {
            await backing!.ReadAsync(offset, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
    }

    /// <summary>
    /// Host data of guest offset <paramref name="guest"/>, decrypted in an encrypted image; a cluster past
    /// the end of the (data) file reads as zeroes before decryption, as QEMU's file driver does.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadHostAsync(long host, long guest, Memory<byte> buffer)
    {
        var n = (int)Math.Clamp(_data.Length - host, 0, buffer.Length);
        if (n > 0)
        {
            await _data.ReadAsync(host, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
        _crypto?.Decrypt(host, guest, buffer.Span);
    }

    /// <summary>Inflates the compressed cluster of <paramref name="entry"/> and copies the part asked for.</summary>
    private async ValueTask ReadCompressedAsync(ulong entry, int inCluster, Memory<byte> buffer)
    {
        if (HasExternalData)
        {
            throw BlockException.Io($"qcow2: compressed cluster in an image with an external data file ('{FileName}')");
        }

        var (hostOffset, length) = CompressedExtent(entry);
        length = (int)Math.Clamp(_file.Length - hostOffset, 0, length);
        if (length <= 0)
        {
            throw BlockException.Io($"qcow2: compressed cluster at 0x{hostOffset:x} beyond end of '{FileName}'");
        }

        var input = ArrayPool<byte>.Shared.Rent(length);
        var output = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            await _file.ReadAsync(hostOffset, input.AsMemory(0, length)).ConfigureAwait(false);
            Qcow2Compression.Decompress(_header.CompressionType, input.AsSpan(0, length), output.AsSpan(0, _clusterSize));
            output.AsSpan(inCluster, buffer.Length).CopyTo(buffer.Span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    /// <summary>
    /// This layer only: unallocated ranges are reported without Allocated so the caller asks the backing node.
    /// Block status tells only data, zeroes and unallocated apart, so one answer joins the clusters of one
    /// status wherever they are on the host, and goes on into the next L2 tables while the status lasts
    /// (a map of a sparse image then costs one call per run, not one per L2 table or host run).
    /// </summary>
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var l1 = _l1;
        var l2Span = 1L << (_clusterBits + _l2Bits);
        var flags = BlockStatusFlags.None;
        var done = 0L;
        do
        {
            var m = await GetMappingAsync(l1, offset + done, length - done, anyHost: true).ConfigureAwait(false);
            var next = m.Kind switch
            {
                Qcow2ClusterKind.Unallocated => BlockStatusFlags.None,
                Qcow2ClusterKind.Zero => BlockStatusFlags.Allocated | BlockStatusFlags.Zero,
                _ => BlockStatusFlags.Allocated | BlockStatusFlags.Data,
            };
            if (done > 0 && next != flags)
            {
                break;
            }

            flags = next;
            done += m.Length;
        }
        while (done < length && ((offset + done) & (l2Span - 1)) == 0);

        return new BlockStatus(done, flags);
    }
}
