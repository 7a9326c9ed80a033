using System.Buffers;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Write-zeroes (v3 zero clusters, or zero subclusters with extended L2) and discard. Both change
/// only L2 entries for whole units; the L2 change is written back before the old clusters are freed.
/// </summary>
public sealed partial class Qcow2Node
{
    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        CheckNotCorrupt();
        if (_header.Version < 3 || _header.DataFileRaw)
        {
            throw BlockException.NotSupported("qcow2: zero clusters need version 3 and no raw data file");
        }

        var unit = (long)SubclusterSize;
        var end = offset + length;
        var headEnd = Math.Min(AlignUp(offset, unit), end);
        var tailStart = Math.Max(end & ~(unit - 1), headEnd);

        // The last cluster of an image whose size is not cluster aligned counts as whole.
        if (end == Length && tailStart < end)
        {
            tailStart = end;
        }

        var fast = (flags & ZeroFlags.NoFallback) != 0;
        if (headEnd > offset)
        {
            await ZeroPartialAsync(offset, headEnd - offset, fast).ConfigureAwait(false);
        }

        if (tailStart > headEnd)
        {
            await ChangeMappingAsync(headEnd, tailStart - headEnd, discard: false, unmap: (flags & ZeroFlags.MayUnmap) != 0).ConfigureAwait(false);
        }

        if (end > tailStart)
        {
            await ZeroPartialAsync(tailStart, end - tailStart, fast).ConfigureAwait(false);
        }
    }

    /// <summary>Zeroes less than one unit: nothing when it already reads as zeroes, else by writing zeroes.</summary>
    private async ValueTask ZeroPartialAsync(long offset, long length, bool fast)
    {
        var m = await GetMappingAsync(_l1, offset, length).ConfigureAwait(false);
        var backing = BackingChild?.Node;
        if (m.Length == length && (m.Kind == Qcow2ClusterKind.Zero ||
                                   (m.Kind == Qcow2ClusterKind.Unallocated && (backing is null || offset >= backing.Length))))
        {
            return;
        }

        if (fast)
        {
            throw BlockException.NotSupported("qcow2: zeroing part of a cluster needs a data write");
        }

        var zeroes = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            Array.Clear(zeroes, 0, (int)length);
            await WriteChunkAsync(offset, zeroes.AsMemory(0, (int)length)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeroes);
        }
    }

    /// <summary>Discard: only with discard=unmap; whole clusters become zero (v3) or unallocated, their clusters freed.</summary>
    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        // Version 2 cannot express "zero" over a backing file, so (as QEMU) it does not discard there.
        if (!DiscardUnmap || _header.DataFileRaw || (_header.Version < 3 && BackingChild is not null))
        {
            return;
        }

        CheckNotCorrupt();
        await ChangeMappingAsync(offset, length, discard: true, unmap: true).ConfigureAwait(false);
    }

    /// <summary>Applies zero or discard to whole units of [offset, offset+length), one L2 table at a time.</summary>
    private async ValueTask ChangeMappingAsync(long offset, long length, bool discard, bool unmap)
    {
        var end = offset + length;
        while (offset < end)
        {
            var chunkEnd = Math.Min(end, (offset & ~(L2Span - 1)) + L2Span);
            var lockStart = offset & ClusterOffsetMask;
            using (await _clusterLocks.AcquireAsync(lockStart, AlignUp(chunkEnd, _clusterSize) - lockStart).ConfigureAwait(false))
            {
                await ChangeMappingInTableAsync(offset, chunkEnd, discard, unmap).ConfigureAwait(false);
            }

            offset = chunkEnd;
        }
    }

    private async ValueTask ChangeMappingInTableAsync(long offset, long end, bool discard, bool unmap)
    {
        var hasBacking = BackingChild is not null;
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var readTable = await GetL2ForReadAsync(offset).ConfigureAwait(false);
            if (readTable is null && (!hasBacking || _header.Version < 3))
            {
                return; // unallocated and nothing shows through: already reads as zeroes
            }

            // Decide every entry first, so that a refusal (ENOTSUP) leaves the table untouched.
            var source = readTable ?? await GetWritableL2Async(offset).ConfigureAwait(false);
            var changes = new List<(int Index, ulong Entry, ulong Bitmap, ulong Old, bool Free, long Punch)>();
            for (var gc = offset & ClusterOffsetMask; gc < end; gc += _clusterSize)
            {
                var index = L2Index(gc);
                var entry = ReadL2Entry(source, index);
                var bitmap = ReadL2Bitmap(source, index);
                var zs = Math.Max(offset, gc) - gc;
                var ze = Math.Min(end, gc + _clusterSize) - gc;
                var whole = zs == 0 && (ze == _clusterSize || gc + ze >= Length);
                var (newEntry, newBitmap, free) = _header.ExtendedL2
                    ? ExtendedZeroEntry(entry, bitmap, zs, ze, whole, discard || unmap)
                    : StandardZeroEntry(entry, discard, unmap, hasBacking);
                long punch = 0;
                if (free && KeepReference(entry, ref newEntry, ref newBitmap, out punch))
                {
                    free = false;
                }

                if (newEntry != entry || newBitmap != bitmap)
                {
                    changes.Add((index, newEntry, newBitmap, entry, free, punch));
                }
            }

            if (changes.Count == 0)
            {
                return;
            }

            var table = await GetWritableL2Async(offset).ConfigureAwait(false);
            List<ulong>? toFree = null;
            List<long>? kept = null;
            foreach (var c in changes)
            {
                WriteL2Entry(table, c.Index, c.Entry, c.Bitmap);
                if (c.Free)
                {
                    (toFree ??= new()).Add(c.Old);
                }
                else if (c.Punch != 0)
                {
                    (kept ??= new()).Add(c.Punch);
                }
            }

            if (toFree is not null || kept is not null)
            {
                await WriteBackLockedAsync().ConfigureAwait(false);
                var released = kept ?? new List<long>();
                foreach (var old in toFree ?? [])
                {
                    await FreeEntryLockedAsync(old, released).ConfigureAwait(false);
                }

                if (_options.PassDiscardRequest ?? DiscardUnmap)
                {
                    await DiscardReleasedLockedAsync(released).ConfigureAwait(false);
                }
            }

            await WriteBackIfFullLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Standard L2: zero keeps an owned cluster allocated (zero flag) unless unmapping; discard (like
    /// QEMU) leaves a zero cluster in v3 so that backing data does not show through; v2 (never
    /// with a backing file here) leaves it unallocated.
    /// </summary>
    private (ulong Entry, ulong Bitmap, bool Free) StandardZeroEntry(ulong entry, bool discard, bool unmap, bool hasBacking)
    {
        var compressed = (entry & Qcow2Format.FlagCompressed) != 0;
        var copied = (entry & Qcow2Format.FlagCopied) != 0;
        var host = entry & Qcow2Format.OffsetMask;
        var hasHost = !compressed && (host != 0 || (HasExternalData && copied));
        var isUnallocated = !compressed && !hasHost && (entry & Qcow2Format.FlagZero) == 0;
        if (discard)
        {
            if (isUnallocated && !hasBacking)
            {
                return (entry, 0, false);
            }

            return (_header.Version >= 3 ? Qcow2Format.FlagZero : 0, 0, compressed || hasHost);
        }

        if (hasHost && copied && !unmap)
        {
            return (host | Qcow2Format.FlagCopied | Qcow2Format.FlagZero, 0, false);
        }

        return (Qcow2Format.FlagZero, 0, compressed || hasHost);
    }

    /// <summary>Extended L2: whole clusters lose their host cluster when unmapping; otherwise the subclusters turn zero.</summary>
    private (ulong Entry, ulong Bitmap, bool Free) ExtendedZeroEntry(ulong entry, ulong bitmap, long zs, long ze, bool whole, bool unmap)
    {
        var compressed = (entry & Qcow2Format.FlagCompressed) != 0;
        var copied = (entry & Qcow2Format.FlagCopied) != 0;
        var host = entry & Qcow2Format.OffsetMask;
        var hasHost = !compressed && (host != 0 || (HasExternalData && copied));
        if (whole && (unmap || compressed || (hasHost && !copied)))
        {
            return (0, Qcow2Format.BitmapAllZeroes, compressed || hasHost);
        }

        if (compressed)
        {
            // Part of a compressed cluster cannot be zero on its own; the engine writes zeroes instead.
            throw BlockException.NotSupported("qcow2: zeroing part of a compressed cluster");
        }

        var mask = SubclusterMask(zs, ze);
        return (entry, (bitmap & ~mask) | (mask << 32), false);
    }

    /// <summary>
    /// Passes a discard down: the given clusters are punched in the image file (the options that decide
    /// when are in Qcow2Node.DiscardPassing.cs). Safe under the metadata lock: nothing can reuse them
    /// before this returns. Advisory, so failures are ignored.
    /// </summary>
    private async ValueTask DiscardReleasedLockedAsync(List<long> released)
    {
        released.Sort();
        for (var i = 0; i < released.Count;)
        {
            var start = released[i];
            var end = start + _clusterSize;
            for (i++; i < released.Count && released[i] == end; i++)
            {
                end += _clusterSize;
            }

            try
            {
                await _file.DiscardAsync(start, end - start).ConfigureAwait(false);
            }
            catch (BlockException)
            {
                // The space stays allocated in the file; the image is consistent either way.
            }
        }
    }
}
