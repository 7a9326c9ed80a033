using System.Buffers;
using System.Runtime.CompilerServices;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Writes: in-place writes to clusters we own, and allocating writes with copy-on-write of the
/// untouched part of a cluster (or subcluster) from the old content (backing node, zeroes,
/// compressed or shared cluster). Order per allocating write: refcounts in the cache → data written
/// → L2 entries in the cache (write-back writes refcounts, flushes, then L2 tables) → old clusters freed.
/// </summary>
public sealed partial class Qcow2Node
{
    private int SubclusterSize => 1 << _subclusterBits;

    private long AlignUp(long value, long unit) => (value + unit - 1) & ~(unit - 1);

    private long L2Span => 1L << (_clusterBits + _l2Bits);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        CheckNotCorrupt();
        if ((flags & WriteFlags.Compressed) != 0)
        {
            await WriteCompressedAsync(offset, buffer).ConfigureAwait(false);
            return;
        }

        while (buffer.Length > 0)
        {
            var n = (int)Math.Min(buffer.Length, L2Span - (offset & (L2Span - 1)));
            await WriteChunkAsync(offset, buffer[..n]).ConfigureAwait(false);
            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>Writes a range inside one L2 table; the clusters it touches are locked against other mapping changes.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteChunkAsync(long offset, ReadOnlyMemory<byte> data)
    {
        var start = offset & ClusterOffsetMask;
        var end = AlignUp(offset + data.Length, _clusterSize);
        using var range = await _clusterLocks.AcquireAsync(start, end - start).ConfigureAwait(false);
        var m = await GetMappingAsync(_l1, offset, data.Length).ConfigureAwait(false);
        if (m.Kind == Qcow2ClusterKind.Normal && m.Copied && m.Length == data.Length)
        {
            await WriteHostAsync(m.HostOffset, offset, data).ConfigureAwait(false);
            return;
        }

        await WriteAllocatingAsync(offset, data).ConfigureAwait(false);
    }

    /// <summary>Stores guest bytes of <paramref name="guest"/> at <paramref name="host"/>, encrypted in a copy in an encrypted image.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteHostAsync(long host, long guest, ReadOnlyMemory<byte> data)
    {
        if (_crypto is not null)
        {
            var copy = ArrayPool<byte>.Shared.Rent(data.Length);
            try
            {
                var encrypted = copy.AsMemory(0, data.Length);
                data.CopyTo(encrypted);
                _crypto.Encrypt(host, guest, encrypted.Span);
                await WriteHostPlainAsync(host, encrypted).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }

            return;
        }

        await WriteHostPlainAsync(host, data).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteHostPlainAsync(long host, ReadOnlyMemory<byte> data)
    {
        if (_data.Length < host + data.Length)
        {
            // Only an external data file can be shorter than what the L2 table maps.
            await _meta.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_data.Length < host + data.Length)
                {
                    await _data.TruncateAsync(AlignUp(host + data.Length, _clusterSize)).ConfigureAwait(false);
                }
            }
            finally
            {
                _meta.Release();
            }
        }

        await _data.WriteAsync(host, data).ConfigureAwait(false);
    }

    /// <summary>The L2 table mapping <paramref name="guest"/> for reading, or null when the L1 entry is empty.</summary>
    private async ValueTask<Qcow2Table?> GetL2ForReadAsync(long guest)
    {
        var l1Index = L1Index(guest);
        if (l1Index >= _l1.Length)
        {
            return null;
        }

        var off = await L2OffsetAsync(_l1[l1Index], l1Index).ConfigureAwait(false);
        return off == 0 ? null : await _l2Cache.GetAsync(off).ConfigureAwait(false);
    }

    private async ValueTask WriteAllocatingAsync(long offset, ReadOnlyMemory<byte> data)
    {
        var first = offset & ClusterOffsetMask;
        var count = (int)((AlignUp(offset + data.Length, _clusterSize) - first) >> _clusterBits);
        var plans = new Qcow2ClusterPlan[count];
        var table = await GetL2ForReadAsync(first).ConfigureAwait(false);
        var needNew = 0;
        for (var i = 0; i < count; i++)
        {
            var gc = first + ((long)i << _clusterBits);
            var ws = (int)(Math.Max(offset, gc) - gc);
            var we = (int)(Math.Min(offset + data.Length, gc + _clusterSize) - gc);
            var index = L2Index(gc);
            var entry = table is null ? 0 : ReadL2Entry(table, index);
            var bitmap = table is null ? 0 : ReadL2Bitmap(table, index);
            plans[i] = Plan(gc, ws, we, entry, bitmap);
            if (plans[i].Mode == Qcow2WriteMode.New)
            {
                needNew++;
            }
        }

        long allocated = -1;
        if (needNew > 0)
        {
            allocated = await AssignHostClustersAsync(plans, needNew).ConfigureAwait(false);
        }

        try
        {
            await WritePlannedDataAsync(offset, data, plans).ConfigureAwait(false);
        }
        catch
        {
            if (allocated >= 0)
            {
                await ReleaseAllocationAsync(allocated, needNew).ConfigureAwait(false);
            }

            throw;
        }

        if (Array.TrueForAll(plans, p => p.Mode == Qcow2WriteMode.Direct))
        {
            return;
        }

        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var writable = await GetWritableL2Async(first).ConfigureAwait(false);
            List<ulong>? toFree = null;
            foreach (ref var p in plans.AsSpan())
            {
                if (p.Mode == Qcow2WriteMode.Direct)
                {
                    continue;
                }

                var (entry, bitmap) = NewEntryFor(p);
                WriteL2Entry(writable, L2Index(p.Guest), entry, bitmap);
                if (p.FreeOld)
                {
                    (toFree ??= new()).Add(p.OldEntry);
                }
            }

            if (toFree is not null)
            {
                await WriteBackLockedAsync().ConfigureAwait(false);
                foreach (var old in toFree)
                {
                    await FreeEntryLockedAsync(old).ConfigureAwait(false);
                }
            }

            await WriteBackIfFullLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>Decides how one cluster is written, from its current L2 entry.</summary>
    private Qcow2ClusterPlan Plan(long gc, int ws, int we, ulong entry, ulong bitmap)
    {
        var p = new Qcow2ClusterPlan { Guest = gc, WriteStart = ws, WriteEnd = we, OldEntry = entry, OldBitmap = bitmap };
        var compressed = (entry & Qcow2Format.FlagCompressed) != 0;
        var copied = (entry & Qcow2Format.FlagCopied) != 0;
        var hostOff = (long)(entry & Qcow2Format.OffsetMask);
        var hasHost = !compressed && (hostOff != 0 || (HasExternalData && copied));
        p.Host = hasHost ? hostOff : 0;
        var noBackingData = BackingChild is not { } b || gc >= b.Node.Length;
        p.ZeroSource = !compressed && !hasHost &&
                       (_header.ExtendedL2 ? noBackingData : entry == Qcow2Format.FlagZero || (entry == 0 && noBackingData));
        if (!_header.ExtendedL2)
        {
            if (hasHost && copied && (entry & Qcow2Format.FlagZero) == 0)
            {
                (p.Mode, p.UnitStart, p.UnitEnd) = (Qcow2WriteMode.Direct, ws, we);
            }
            else if (hasHost && copied)
            {
                (p.Mode, p.UnitStart, p.UnitEnd) = (Qcow2WriteMode.Reuse, 0, _clusterSize);
            }
            else
            {
                (p.Mode, p.UnitStart, p.UnitEnd) = (Qcow2WriteMode.New, 0, _clusterSize);
                p.FreeOld = compressed || hasHost;
            }

            return p;
        }

        var ss = SubclusterSize;
        var us = ws & ~(ss - 1);
        var ue = (int)AlignUp(we, ss);
        if (compressed || (hasHost && !copied))
        {
            (p.Mode, p.UnitStart, p.UnitEnd, p.FullCopy, p.FreeOld) = (Qcow2WriteMode.New, 0, _clusterSize, true, true);
        }
        else if (hasHost)
        {
            var mask = SubclusterMask(us, ue);
            var allData = (bitmap & mask) == mask && (bitmap & (mask << 32)) == 0;
            (p.Mode, p.UnitStart, p.UnitEnd) = allData ? (Qcow2WriteMode.Direct, ws, we) : (Qcow2WriteMode.Reuse, us, ue);
        }
        else
        {
            (p.Mode, p.UnitStart, p.UnitEnd) = (Qcow2WriteMode.New, us, ue);
        }

        return p;
    }

    /// <summary>Allocation bits of the subclusters covering bytes [start, end) of a cluster.</summary>
    private ulong SubclusterMask(long start, long end)
    {
        var a = (int)(start >> _subclusterBits);
        var b = (int)((end + SubclusterSize - 1) >> _subclusterBits);
        return b - a >= 32 ? 0xffffffffUL : ((1UL << (b - a)) - 1) << a;
    }

    private (ulong Entry, ulong Bitmap) NewEntryFor(in Qcow2ClusterPlan p)
    {
        var entry = (ulong)p.Host | Qcow2Format.FlagCopied;
        if (!_header.ExtendedL2)
        {
            return (entry, 0);
        }

        if (p.FullCopy)
        {
            return (entry, Qcow2Format.BitmapAllAllocated);
        }

        var mask = SubclusterMask(p.UnitStart, p.UnitEnd);
        return (entry, (p.OldBitmap | mask) & ~(mask << 32));
    }

    /// <summary>Gives every New plan a host cluster: contiguous fresh clusters, or the guest offset in an external data file.</summary>
    private async ValueTask<long> AssignHostClustersAsync(Qcow2ClusterPlan[] plans, int needNew)
    {
        if (HasExternalData)
        {
            long end = 0;
            foreach (ref var p in plans.AsSpan())
            {
                if (p.Mode == Qcow2WriteMode.New)
                {
                    p.Host = p.Guest;
                    p.FreeOld = false;
                    end = p.Guest + _clusterSize;
                }
            }

            await _meta.WaitAsync().ConfigureAwait(false);
            try
            {
                await MarkDirtyAsync().ConfigureAwait(false);
                if (_data.Length < end)
                {
                    await _data.TruncateAsync(end).ConfigureAwait(false);
                }
            }
            finally
            {
                _meta.Release();
            }

            return -1;
        }

        long host;
        bool fresh;
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var usedEnd = _usedEnd;
            host = await AllocateClustersLockedAsync(needNew).ConfigureAwait(false);

            // Clusters past the end of what the image ever used read as zeroes: no need to copy zeroes into
            // them, unless the image is encrypted (zeroes on disk decrypt to noise).
            fresh = host >= usedEnd && _crypto is null;
        }
        finally
        {
            _meta.Release();
        }

        var next = host;
        foreach (ref var p in plans.AsSpan())
        {
            if (p.Mode == Qcow2WriteMode.New)
            {
                p.Host = next;
                p.SkipCow = fresh && p.ZeroSource;
                next += _clusterSize;
            }
        }

        return host;
    }

    private async ValueTask ReleaseAllocationAsync(long host, int count)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            await FreeClustersLockedAsync(host, count).ConfigureAwait(false);
        }
        catch (BlockException)
        {
            // The clusters stay leaked; the original error is what the caller needs to see.
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Stores each planned cluster's bytes: the new data, and for partial units the old guest content
    /// around it. Consecutive pure-data parts contiguous on the host go out as one request.
    /// </summary>
    private async ValueTask WritePlannedDataAsync(long offset, ReadOnlyMemory<byte> data, Qcow2ClusterPlan[] plans)
    {
        long runHost = -1;
        int runStart = 0, runLength = 0;
        foreach (var p in plans)
        {
            var dataStart = (int)(p.Guest + p.WriteStart - offset);
            var dataLength = p.WriteEnd - p.WriteStart;
            if (p.IsPureData)
            {
                var host = p.Host + p.WriteStart;
                if (runLength > 0 && runHost + runLength == host && runStart + runLength == dataStart)
                {
                    runLength += dataLength;
                    continue;
                }

                if (runLength > 0)
                {
                    await WriteHostAsync(runHost, offset + runStart, data.Slice(runStart, runLength)).ConfigureAwait(false);
                }

                (runHost, runStart, runLength) = (host, dataStart, dataLength);
                continue;
            }

            var unitLength = p.UnitEnd - p.UnitStart;
            var buf = ArrayPool<byte>.Shared.Rent(unitLength);
            try
            {
                var mem = buf.AsMemory(0, unitLength);
                var head = p.WriteStart - p.UnitStart;
                if (head > 0)
                {
                    await ReadGuestAsync(_l1, p.Guest + p.UnitStart, mem[..head]).ConfigureAwait(false);
                }

                var tail = p.WriteEnd - p.UnitStart;
                if (tail < unitLength)
                {
                    await ReadGuestAsync(_l1, p.Guest + p.WriteEnd, mem[tail..]).ConfigureAwait(false);
                }

                data.Span.Slice(dataStart, dataLength).CopyTo(mem.Span[head..]);
                await WriteHostAsync(p.Host + p.UnitStart, p.Guest + p.UnitStart, mem).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buf);
            }
        }

        if (runLength > 0)
        {
            await WriteHostAsync(runHost, offset + runStart, data.Slice(runStart, runLength)).ConfigureAwait(false);
        }
    }

    /// <summary>Drops the reference an L2 entry held: its data cluster, or the clusters a compressed cluster spans.</summary>
    private async ValueTask FreeEntryLockedAsync(ulong entry, List<long>? released = null)
    {
        if (HasExternalData)
        {
            return;
        }

        if ((entry & Qcow2Format.FlagCompressed) != 0)
        {
            var (coffset, csize) = CompressedExtent(entry);
            var firstCluster = coffset & ClusterOffsetMask;
            var count = (int)((AlignUp(coffset + csize, _clusterSize) - firstCluster) >> _clusterBits);
            await FreeClustersLockedAsync(firstCluster, count, released).ConfigureAwait(false);
            return;
        }

        var host = (long)(entry & Qcow2Format.OffsetMask);
        if (host != 0)
        {
            await FreeClustersLockedAsync(host, 1, released).ConfigureAwait(false);
        }
    }
}
