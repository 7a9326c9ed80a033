using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Refcounts: the refcount table (in memory, written through) and refcount blocks (cached), entries
/// of 2^refcount_order bits (sub-byte widths packed from the least significant bit, wider ones
/// big-endian), cluster allocation and freeing, and growth of the refcount table.
/// All of it runs under the metadata lock.
/// </summary>
public sealed partial class Qcow2Node
{
    private ulong[] _refTable;
    private long _freeHint;

    private int RefBits => 1 << _header.RefcountOrder;

    /// <summary>Refcount entries in one refcount block.</summary>
    private long RefBlockEntries => (long)_clusterSize * 8 / RefBits;

    private ulong MaxRefcount => RefBits == 64 ? ulong.MaxValue : (1UL << RefBits) - 1;

    private async ValueTask LoadRefcountTableAsync()
    {
        var entries = _header.RefcountTableClusters * (_clusterSize / 8);
        var bytes = new byte[entries * 8];
        await _file.ReadAsync(_header.RefcountTableOffset, bytes).ConfigureAwait(false);
        _refTable = new ulong[entries];
        for (var i = 0; i < entries; i++)
        {
            _refTable[i] = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(i * 8));
        }
    }

    private static ulong GetRefcountEntry(ReadOnlySpan<byte> block, long index, int bits) => bits switch
    {
        1 or 2 or 4 => (ulong)((block[(int)(index * bits / 8)] >> (int)(index * bits % 8)) & ((1 << bits) - 1)),
        8 => block[(int)index],
        16 => BinaryPrimitives.ReadUInt16BigEndian(block[(int)(index * 2)..]),
        32 => BinaryPrimitives.ReadUInt32BigEndian(block[(int)(index * 4)..]),
        _ => BinaryPrimitives.ReadUInt64BigEndian(block[(int)(index * 8)..]),
    };

    internal static void SetRefcountEntry(Span<byte> block, long index, int bits, ulong value)
    {
        switch (bits)
        {
            case 1 or 2 or 4:
                var shift = (int)(index * bits % 8);
                var mask = ((1 << bits) - 1) << shift;
                ref var b = ref block[(int)(index * bits / 8)];
                b = (byte)((b & ~mask) | ((int)value << shift));
                break;
            case 8:
                block[(int)index] = (byte)value;
                break;
            case 16:
                BinaryPrimitives.WriteUInt16BigEndian(block[(int)(index * 2)..], (ushort)value);
                break;
            case 32:
                BinaryPrimitives.WriteUInt32BigEndian(block[(int)(index * 4)..], (uint)value);
                break;
            default:
                BinaryPrimitives.WriteUInt64BigEndian(block[(int)(index * 8)..], value);
                break;
        }
    }

    private long RefBlockOffset(long blockIndex)
    {
        if (blockIndex >= _refTable.Length)
        {
            return 0;
        }

        var off = (long)(_refTable[blockIndex] & ~0x1ffUL);
        if ((off & (_clusterSize - 1)) != 0)
        {
            throw BlockException.Io($"qcow2: refcount block offset 0x{off:x} unaligned (refcount table entry {blockIndex}) in '{FileName}'");
        }

        return off;
    }

    /// <summary>The refcount of host cluster <paramref name="cluster"/> (index, not offset); 0 where no block exists.</summary>
    private async ValueTask<ulong> GetRefcountAsync(long cluster)
    {
        var blockOffset = RefBlockOffset(cluster / RefBlockEntries);
        if (blockOffset == 0)
        {
            return 0;
        }

        var block = await _refCache.GetAsync(blockOffset).ConfigureAwait(false);
        return GetRefcountEntry(block.Data, cluster % RefBlockEntries, RefBits);
    }

    /// <summary>Sets a refcount in the cached block (the block must exist).</summary>
    private async ValueTask SetRefcountLockedAsync(long cluster, ulong value)
    {
        var blockOffset = RefBlockOffset(cluster / RefBlockEntries);
        if (blockOffset == 0)
        {
            throw await MarkCorruptAsync($"no refcount block for cluster 0x{cluster << _clusterBits:x}").ConfigureAwait(false);
        }

        var block = await _refCache.GetAsync(blockOffset).ConfigureAwait(false);
        SetRefcountEntry(block.Data, cluster % RefBlockEntries, RefBits, value);
        _refCache.MarkDirty(block);
    }

    /// <summary>
    /// Allocates <paramref name="count"/> contiguous free host clusters with refcount 1 (in the cache)
    /// and grows the image file to hold them. Returns the host offset of the first. Refcount blocks
    /// missing for the range are placed right after it (so blocks never split a run); they reach the
    /// file, flushed, before the refcount table entries that point to them.
    /// </summary>
    private async ValueTask<long> AllocateClustersLockedAsync(int count)
    {
        CheckNotCorrupt();
        await MarkDirtyAsync().ConfigureAwait(false);
        var n = RefBlockEntries;

        // Room for the blocks a run of count + spare clusters can need (it touches at most that many ranges).
        var spare = (int)(count / (n - 1)) + 3;
        long start;
        List<long> missing;
        while (true)
        {
            start = await FindFreeRunAsync(Math.Max(_freeHint, 1), count + spare).ConfigureAwait(false);
            missing = MissingBlocks(start, count);
            while (MissingBlocks(start, count + missing.Count) is { } more && more.Count != missing.Count)
            {
                missing = more;
            }

            if (missing.TrueForAll(b => b < _refTable.Length))
            {
                break;
            }

            // The table grows into free space; the search starts again over the new layout.
            await GrowRefcountTableLockedAsync(missing.Find(b => b >= _refTable.Length)).ConfigureAwait(false);
        }

        var offset = start << _clusterBits;
        var total = count + missing.Count;
        await CheckNotMetadataAsync(offset, (long)total << _clusterBits).ConfigureAwait(false);
        await EnsureFileLengthAsync(offset + ((long)total << _clusterBits)).ConfigureAwait(false);
        var created = new List<Qcow2Table>();
        for (var i = 0; i < missing.Count; i++)
        {
            var blockOffset = (start + count + i) << _clusterBits;
            created.Add(_refCache.CreateNew(blockOffset));
            _refTable[missing[i]] = (ulong)blockOffset;
        }

        for (var i = 0; i < total; i++)
        {
            await SetRefcountLockedAsync(start + i, 1).ConfigureAwait(false);
        }

        if (created.Count > 0)
        {
            foreach (var block in created)
            {
                await _refCache.WriteOneAsync(block).ConfigureAwait(false);
            }

            await _file.FlushAsync().ConfigureAwait(false);
            var entry = new byte[8];
            foreach (var b in missing)
            {
                BinaryPrimitives.WriteUInt64BigEndian(entry, _refTable[b]);
                await _file.WriteAsync(_header.RefcountTableOffset + (b * 8), entry).ConfigureAwait(false);
            }
        }

        if (count == 1 || start == Math.Max(_freeHint, 1))
        {
            _freeHint = start + total;
        }

        return offset;
    }

    /// <summary>Refcount blocks that do not exist yet for clusters [start, start+length).</summary>
    private List<long> MissingBlocks(long start, long length)
    {
        var list = new List<long>();
        for (var b = start / RefBlockEntries; b <= (start + length - 1) / RefBlockEntries; b++)
        {
            if (RefBlockOffset(b) == 0)
            {
                list.Add(b);
            }
        }

        return list;
    }

    /// <summary>First run of <paramref name="length"/> free clusters from <paramref name="from"/>; clusters without a refcount block are free.</summary>
    private async ValueTask<long> FindFreeRunAsync(long from, long length)
    {
        var c = from;
        long start = c, run = 0;
        while (run < length)
        {
            if (RefBlockOffset(c / RefBlockEntries) == 0)
            {
                // A whole range without a block is free.
                var rangeEnd = ((c / RefBlockEntries) + 1) * RefBlockEntries;
                if (run == 0)
                {
                    start = c;
                }

                run += rangeEnd - c;
                c = rangeEnd;
                continue;
            }

            if (await GetRefcountAsync(c).ConfigureAwait(false) == 0)
            {
                if (run == 0)
                {
                    start = c;
                }

                run++;
            }
            else
            {
                run = 0;
            }

            c++;
        }

        return start;
    }
    /// <summary>A newly allocated range must not overlap the header or fixed tables; if it does, refcounts are wrong.</summary>
    private async ValueTask CheckNotMetadataAsync(long offset, long length)
    {
        static bool Overlaps(long a, long al, long b, long bl) => a < b + bl && b < a + al;
        string? what = null;
        if (offset < _clusterSize)
        {
            what = "the header";
        }
        else if (Overlaps(offset, length, _l1Offset, _l1.Length * 8L))
        {
            what = "the active L1 table";
        }
        else if (Overlaps(offset, length, _header.RefcountTableOffset, _refTable.Length * 8L))
        {
            what = "the refcount table";
        }
        else if (_header.CryptoHeader is { } crypto && Overlaps(offset, length, crypto.Offset, crypto.Length))
        {
            what = "the encryption header";
        }

        if (what is not null)
        {
            throw await MarkCorruptAsync($"allocating clusters at 0x{offset:x} would overwrite {what}").ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Makes the file hold [0, end). It grows by whole steps of <see cref="FileGrowthStep"/> (one
    /// ftruncate per 1 MiB allocation cost a fifth of a second per GiB of a backup and contended
    /// with the data writes for the inode lock); the unused rest of the last step is cut off at close.
    /// </summary>
    private async ValueTask EnsureFileLengthAsync(long end)
    {
        _usedEnd = Math.Max(_usedEnd, end);
        if (_file.Length < end)
        {
            await _file.TruncateAsync(AlignUp(end, Math.Max(FileGrowthStep, _clusterSize))).ConfigureAwait(false);
        }
    }

    private const long FileGrowthStep = 16 * 1024 * 1024;

    /// <summary>Drops one reference to each of <paramref name="count"/> host clusters from <paramref name="offset"/>.</summary>
    /// <remarks>Clusters whose refcount reaches zero are added to <paramref name="released"/> when given.</remarks>
    private async ValueTask FreeClustersLockedAsync(long offset, int count, List<long>? released = null)
    {
        var first = offset >> _clusterBits;
        for (var c = first; c < first + count; c++)
        {
            var rc = await GetRefcountAsync(c).ConfigureAwait(false);
            if (rc == 0)
            {
                throw await MarkCorruptAsync($"refcount of cluster 0x{c << _clusterBits:x} would drop below zero").ConfigureAwait(false);
            }

            await SetRefcountLockedAsync(c, rc - 1).ConfigureAwait(false);
            if (rc == 1)
            {
                (released ?? _releasedSink)?.Add(c << _clusterBits);
                _l2Cache.Remove(c << _clusterBits);
                ForgetFreedCluster(c << _clusterBits);
                _freeHint = Math.Min(_freeHint, c);
            }
        }
    }

    private async ValueTask IncrementRefcountLockedAsync(long offset)
    {
        var c = offset >> _clusterBits;
        var rc = await GetRefcountAsync(c).ConfigureAwait(false);
        if (rc == 0 || rc == MaxRefcount)
        {
            throw await MarkCorruptAsync($"cannot add a reference to cluster 0x{offset:x} (refcount {rc})").ConfigureAwait(false);
        }

        await SetRefcountLockedAsync(c, rc + 1).ConfigureAwait(false);
    }

    /// <summary>
    /// Replaces the refcount table with a larger one that has an entry for <paramref name="blockIndex"/>.
    /// The new table and the refcount blocks that describe it are placed at the start of the range of
    /// block <paramref name="blockIndex"/> (which no block covers yet, so it is free): blocks, then table.
    /// Order: blocks and table written and flushed, then the header points at the new table, then the
    /// old table's clusters are freed.
    /// </summary>
    private async ValueTask GrowRefcountTableLockedAsync(long blockIndex)
    {
        var perCluster = _clusterSize / 8;
        long blocks = 1;
        long tableClusters;
        while (true)
        {
            var entries = Math.Max(blockIndex + blocks, _refTable.Length * 3L / 2);
            tableClusters = (entries + perCluster - 1) / perCluster;
            var needBlocks = (blocks + tableClusters + RefBlockEntries - 1) / RefBlockEntries;
            if (needBlocks <= blocks)
            {
                break;
            }

            blocks = needBlocks;
        }

        if (tableClusters * _clusterSize > Qcow2Format.MaxRefcountTableBytes)
        {
            throw new BlockException(Errno.EFBIG, $"qcow2: refcount table of '{FileName}' cannot grow beyond {Qcow2Format.MaxRefcountTableBytes} bytes");
        }

        var startCluster = blockIndex * RefBlockEntries;
        var used = blocks + tableClusters;
        var newTable = new ulong[tableClusters * perCluster];
        Array.Copy(_refTable, newTable, _refTable.Length);
        var tableOffset = (startCluster + blocks) << _clusterBits;
        await CheckNotMetadataAsync(startCluster << _clusterBits, used << _clusterBits).ConfigureAwait(false);
        await EnsureFileLengthAsync((startCluster + used) << _clusterBits).ConfigureAwait(false);
        for (long i = 0; i < blocks; i++)
        {
            var blockOffset = (startCluster + i) << _clusterBits;
            var block = _refCache.CreateNew(blockOffset);
            var first = (blockIndex + i) * RefBlockEntries;
            for (var c = Math.Max(first, startCluster); c < Math.Min(first + RefBlockEntries, startCluster + used); c++)
            {
                SetRefcountEntry(block.Data, c - first, RefBits, 1);
            }

            await _refCache.WriteOneAsync(block).ConfigureAwait(false);
            newTable[blockIndex + i] = (ulong)blockOffset;
        }

        var bytes = new byte[tableClusters * _clusterSize];
        for (var i = 0; i < newTable.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), newTable[i]);
        }

        await _file.WriteAsync(tableOffset, bytes).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var oldOffset = _header.RefcountTableOffset;
        var oldClusters = _header.RefcountTableClusters;
        _header.RefcountTableOffset = tableOffset;
        _header.RefcountTableClusters = (int)tableClusters;
        var field = new byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(field.AsSpan(8), (uint)tableClusters);
        await _file.WriteAsync(Qcow2Header.OffRefcountTableOffset, field).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        _refTable = newTable;
        await FreeReplacedMetadataLockedAsync(oldOffset, oldClusters).ConfigureAwait(false);
    }
}
