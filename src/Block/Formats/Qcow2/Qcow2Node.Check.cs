using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Refcount repair for images left dirty with lazy refcounts: every cluster's reference count is
/// computed from the metadata (header, encryption header, tables, snapshots, every L1 tree, bitmaps) and the blocks are rewritten
/// where they differ, as QEMU's check with repair does on opening such an image.
/// </summary>
public sealed partial class Qcow2Node
{
    private async ValueTask RebuildRefcountsAsync()
    {
        var fileClusters = AlignUp(_file.Length, _clusterSize) >> _clusterBits;
        if (fileClusters > int.MaxValue)
        {
            throw BlockException.NotSupported("qcow2: image too large to repair refcounts");
        }

        var counts = new uint[fileClusters];
        void Add(long offset, long length)
        {
            for (var c = offset >> _clusterBits; c < AlignUp(offset + length, _clusterSize) >> _clusterBits; c++)
            {
                if (c >= counts.Length)
                {
                    throw BlockException.Io($"qcow2: metadata at 0x{c << _clusterBits:x} beyond end of '{FileName}'");
                }

                counts[c]++;
            }
        }

        Add(0, _clusterSize);
        Add(_header.RefcountTableOffset, _refTable.Length * 8L);
        foreach (var e in _refTable)
        {
            var off = (long)(e & ~0x1ffUL);
            if (off != 0)
            {
                Add(off, _clusterSize);
            }
        }

        Add(_l1Offset, _l1.Length * 8L);
        if (_header.CryptoHeader is { } crypto)
        {
            Add(crypto.Offset, crypto.Length);
        }

        await CountTreeAsync(_l1, Add).ConfigureAwait(false);
        if (_snapshots.Count > 0)
        {
            var tableLength = _snapshots.Sum(s => (long)s.EncodedLength);
            Add(_header.SnapshotsOffset, tableLength);
            foreach (var s in _snapshots)
            {
                Add(s.L1TableOffset, s.L1Size * 8L);
                await CountTreeAsync(await ReadL1Async(s.L1TableOffset, s.L1Size).ConfigureAwait(false), Add).ConfigureAwait(false);
            }
        }

        await CountBitmapsAsync(Add).ConfigureAwait(false);
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            for (long c = 0; c < counts.Length; c++)
            {
                if (RefBlockOffset(c / RefBlockEntries) == 0)
                {
                    if (counts[c] != 0)
                    {
                        throw BlockException.Io($"qcow2: cluster 0x{c << _clusterBits:x} is in use but has no refcount block; cannot repair '{FileName}'");
                    }

                    continue;
                }

                if (await GetRefcountAsync(c).ConfigureAwait(false) != counts[c])
                {
                    await SetRefcountLockedAsync(c, Math.Min(counts[c], MaxRefcount)).ConfigureAwait(false);
                }
            }

            await _refCache.WriteBackAsync().ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>Counts the L2 tables and data clusters one L1 table references.</summary>
    private async ValueTask CountTreeAsync(ulong[] l1, Action<long, long> add)
    {
        for (var l1Index = 0; l1Index < l1.Length; l1Index++)
        {
            var l2 = await L2OffsetAsync(l1[l1Index], l1Index).ConfigureAwait(false);
            if (l2 == 0)
            {
                continue;
            }

            add(l2, _clusterSize);
            var table = await _l2Cache.GetAsync(l2).ConfigureAwait(false);
            for (var i = 0; i < 1 << _l2Bits; i++)
            {
                var e = ReadL2Entry(table, i);
                if ((e & Qcow2Format.FlagCompressed) != 0)
                {
                    var (coffset, csize) = CompressedExtent(e);
                    add(coffset, csize);
                }
                else if ((e & Qcow2Format.OffsetMask) != 0 && !HasExternalData)
                {
                    add((long)(e & Qcow2Format.OffsetMask), _clusterSize);
                }
            }
        }
    }
}
