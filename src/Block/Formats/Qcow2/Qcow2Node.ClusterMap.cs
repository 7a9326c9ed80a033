using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>The L1/L2 cluster map: lookups (standard and extended L2 entries) and L2 table updates.</summary>
public sealed partial class Qcow2Node
{
    private int L2EntrySize => _header.L2EntrySize;

    private int L1Index(long guest) => (int)(guest >> (_clusterBits + _l2Bits));

    private int L2Index(long guest) => (int)((guest >> _clusterBits) & ((1L << _l2Bits) - 1));

    private ulong ReadL2Entry(Qcow2Table t, int index) =>
        BinaryPrimitives.ReadUInt64BigEndian(t.Data.AsSpan(index * L2EntrySize));

    private ulong ReadL2Bitmap(Qcow2Table t, int index) =>
        _header.ExtendedL2 ? BinaryPrimitives.ReadUInt64BigEndian(t.Data.AsSpan(index * 16 + 8)) : 0;

    private void WriteL2Entry(Qcow2Table t, int index, ulong entry, ulong bitmap)
    {
        var span = t.Data.AsSpan(index * L2EntrySize);
        if (_header.ExtendedL2)
        {
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], bitmap);
        }

        BinaryPrimitives.WriteUInt64BigEndian(span, entry);
        _l2Cache.MarkDirty(t);
    }

    /// <summary>The L2 table offset of L1 entry <paramref name="l1Index"/>, or 0; an unaligned offset is signalled corruption.</summary>
    private ValueTask<long> L2OffsetAsync(ulong l1Entry, long l1Index)
    {
        var off = (long)(l1Entry & Qcow2Format.OffsetMask);
        return (off & (_clusterSize - 1)) == 0 ? ValueTask.FromResult(off) : Unaligned();

        async ValueTask<long> Unaligned() =>
            throw await SignalCorruptionAsync($"L2 table offset {Hex(off)} unaligned (L1 index: {Hex(l1Index)})").ConfigureAwait(false);
    }

    /// <summary>
    /// Kind of subcluster <paramref name="sc"/> (0 for standard L2) of entry <paramref name="index"/> of
    /// <paramref name="table"/>. Any host offset an uncompressed entry holds (also with the zero flag,
    /// or for unallocated subclusters) must be cluster aligned, as QEMU's qcow2_get_host_offset checks.
    /// </summary>
    private Qcow2ClusterKind KindOf(Qcow2Table table, int index, ulong entry, ulong bitmap, int sc)
    {
        if ((entry & Qcow2Format.FlagCompressed) != 0)
        {
            return Qcow2ClusterKind.Compressed;
        }

        var host = (long)(entry & Qcow2Format.OffsetMask);
        if ((host & (_clusterSize - 1)) != 0)
        {
            throw new Qcow2CorruptionException($"Cluster allocation offset {Hex(host)} unaligned (L2 offset: {Hex(table.Offset)}, L2 index: {Hex(index)})");
        }

        if (!_header.ExtendedL2)
        {
            if ((entry & Qcow2Format.FlagZero) != 0)
            {
                return Qcow2ClusterKind.Zero;
            }

            // Offset 0 is a valid host offset in an external data file, where every cluster has
            // refcount 1: there the COPIED flag tells a mapped cluster from an unallocated one.
            if ((entry & Qcow2Format.OffsetMask) == 0)
            {
                return HasExternalData && (entry & Qcow2Format.FlagCopied) != 0 ? Qcow2ClusterKind.Normal : Qcow2ClusterKind.Unallocated;
            }

            return Qcow2ClusterKind.Normal;
        }

        var alloc = (bitmap >> sc) & 1;
        var zero = (bitmap >> (32 + sc)) & 1;
        if (alloc != 0 && zero != 0)
        {
            throw new Qcow2CorruptionException($"Invalid cluster entry found  (L2 offset: {Hex(table.Offset)}, L2 index: {Hex(index)})");
        }

        return zero != 0 ? Qcow2ClusterKind.Zero : alloc != 0 ? Qcow2ClusterKind.Normal : Qcow2ClusterKind.Unallocated;
    }

    /// <summary>Host cluster of a normal entry (its alignment checked by <see cref="KindOf"/>): not the header unless in an external data file.</summary>
    private long HostCluster(ulong entry, long guestCluster)
    {
        var host = (long)(entry & Qcow2Format.OffsetMask);
        if (host == 0 && !HasExternalData)
        {
            throw BlockException.Io($"qcow2: data cluster for guest offset 0x{guestCluster:x} at host offset 0 in '{FileName}'");
        }

        return host;
    }

    /// <summary>
    /// Maps guest bytes [offset, offset+max) through <paramref name="l1"/>: the returned run has one kind
    /// and, for normal clusters, is contiguous on the host. It never crosses an L2 table. With
    /// <paramref name="anyHost"/> (block status) a run of data joins normal and compressed clusters
    /// wherever they are on the host; its host offset and COPIED flag then describe its start only.
    /// </summary>
    private async ValueTask<Qcow2Mapping> GetMappingAsync(ulong[] l1, long offset, long max, bool anyHost = false)
    {
        var l2Span = 1L << (_clusterBits + _l2Bits);
        max = Math.Min(max, l2Span - (offset & (l2Span - 1)));
        var l1Index = L1Index(offset);
        if (l1Index >= l1.Length)
        {
            return new Qcow2Mapping(Qcow2ClusterKind.Unallocated, max, 0, 0);
        }

        var l2Offset = await L2OffsetAsync(l1[l1Index], l1Index).ConfigureAwait(false);
        if (l2Offset == 0)
        {
            return new Qcow2Mapping(Qcow2ClusterKind.Unallocated, max, 0, 0);
        }

        var table = await _l2Cache.GetAsync(l2Offset).ConfigureAwait(false);
        try
        {
            return MapInTable(table, offset, max, anyHost);
        }
        catch (Qcow2CorruptionException e)
        {
            throw await SignalCorruptionAsync(e.Message).ConfigureAwait(false);
        }
    }

    private Qcow2Mapping MapInTable(Qcow2Table table, long offset, long max, bool anyHost)
    {
        var subSize = 1L << _subclusterBits;
        var index = L2Index(offset);
        var entry = ReadL2Entry(table, index);
        var bitmap = ReadL2Bitmap(table, index);
        var sc = (int)((offset & (_clusterSize - 1)) >> _subclusterBits);
        var kind = KindOf(table, index, entry, bitmap, sc);
        var guestCluster = offset & ClusterOffsetMask;
        var host = kind == Qcow2ClusterKind.Normal ? HostCluster(entry, guestCluster) + (offset - guestCluster) : 0;
        if (kind == Qcow2ClusterKind.Compressed && !anyHost)
        {
            return new Qcow2Mapping(kind, Math.Min(max, guestCluster + _clusterSize - offset), 0, entry);
        }

        // Extend over following subclusters and clusters of the same kind (and host contiguity and COPIED flag).
        var copied = (entry & Qcow2Format.FlagCopied) != 0;
        var length = Math.Min(max, ((offset >> _subclusterBits) + 1 << _subclusterBits) - offset);
        var entries = 1 << _l2Bits;
        while (length < max)
        {
            var next = offset + length;
            var ni = L2Index(next);

            // A run of all-zero entries is unallocated whatever the entry width: skip it with one
            // vectorised search instead of decoding entry by entry (block status of sparse images).
            if (kind == Qcow2ClusterKind.Unallocated && (next & (_clusterSize - 1)) == 0 && ni != 0 && ni < entries)
            {
                var rest = table.Data.AsSpan(ni * L2EntrySize, (entries - ni) * L2EntrySize);
                var firstSet = rest.IndexOfAnyExcept((byte)0);
                var zeroEntries = firstSet < 0 ? entries - ni : firstSet / L2EntrySize;
                if (zeroEntries > 0)
                {
                    length = Math.Min(max, length + ((long)zeroEntries << _clusterBits));
                    continue;
                }
            }

            if (ni != index)
            {
                if (ni == 0 || ni >= entries)
                {
                    break;
                }

                index = ni;
                entry = ReadL2Entry(table, index);
                bitmap = ReadL2Bitmap(table, index);
            }

            var nsc = (int)((next & (_clusterSize - 1)) >> _subclusterBits);
            var nextKind = KindOf(table, index, entry, bitmap, nsc);
            if (anyHost ? AsStatus(nextKind) != AsStatus(kind) : nextKind != kind)
            {
                break;
            }

            if (nextKind == Qcow2ClusterKind.Normal)
            {
                // The host cluster is checked even where the run does not need it to be contiguous.
                var nGuestCluster = next & ClusterOffsetMask;
                if ((HostCluster(entry, nGuestCluster) + (next - nGuestCluster) != host + length ||
                    ((entry & Qcow2Format.FlagCopied) != 0) != copied) && !anyHost)
                {
                    break;
                }
            }

            length = Math.Min(max, length + subSize);
        }

        return new Qcow2Mapping(kind, length, host, entry, copied);

        // Block status does not tell compressed data from normal data.
        static Qcow2ClusterKind AsStatus(Qcow2ClusterKind k) => k == Qcow2ClusterKind.Compressed ? Qcow2ClusterKind.Normal : k;
    }

    /// <summary>
    /// Returns the writable L2 table for guest offset <paramref name="guest"/>, allocating it (or
    /// copying a table shared with a snapshot) and pointing the L1 entry at it, in crash-safe order:
    /// refcount → flush → new table → flush → L1 entry. Caller holds the metadata lock.
    /// </summary>
    private async ValueTask<Qcow2Table> GetWritableL2Async(long guest)
    {
        var l1Index = L1Index(guest);
        if (l1Index >= _l1.Length)
        {
            throw await MarkCorruptAsync($"guest offset 0x{guest:x} beyond the L1 table ({_l1.Length} entries)").ConfigureAwait(false);
        }

        var l1Entry = _l1[l1Index];
        var oldOffset = await L2OffsetAsync(l1Entry, l1Index).ConfigureAwait(false);
        if (oldOffset != 0 && (l1Entry & Qcow2Format.FlagCopied) != 0)
        {
            return await _l2Cache.GetAsync(oldOffset).ConfigureAwait(false);
        }

        byte[]? contents = null;
        if (oldOffset != 0)
        {
            contents = (await _l2Cache.GetAsync(oldOffset).ConfigureAwait(false)).Data;
        }

        var newOffset = await AllocateClustersLockedAsync(1).ConfigureAwait(false);
        await WriteBackLockedAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        var table = _l2Cache.CreateNew(newOffset, contents);
        await _l2Cache.WriteOneAsync(table).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        await WriteL1EntryAsync(l1Index, (ulong)newOffset | Qcow2Format.FlagCopied).ConfigureAwait(false);
        if (oldOffset != 0)
        {
            await FreeReplacedMetadataLockedAsync(oldOffset, 1).ConfigureAwait(false);
        }

        return table;
    }

    /// <summary>Host bytes of a compressed cluster: [Offset, Offset+Length), whole 512-byte sectors as stored.</summary>
    private (long Offset, int Length) CompressedExtent(ulong entry)
    {
        var x = 62 - (_clusterBits - 8);
        var offset = (long)(entry & ((1UL << x) - 1));
        var sectors = (int)((entry >> x) & ((1UL << (_clusterBits - 8)) - 1)) + 1;
        return (offset, (sectors * Qcow2Format.CompressedSectorSize) - (int)(offset & (Qcow2Format.CompressedSectorSize - 1)));
    }

    private async ValueTask WriteL1EntryAsync(int index, ulong value)
    {
        var buf = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(buf, value);
        await _file.WriteAsync(_l1Offset + (index * 8L), buf).ConfigureAwait(false);
        _l1[index] = value;
    }
}
