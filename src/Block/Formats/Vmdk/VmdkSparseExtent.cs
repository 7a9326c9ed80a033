using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// A sparse extent (hosted sparse, COWD or seSparse): a grain directory read at open, grain tables
/// loaded on demand into a bounded cache, grains found through them. Writes are in
/// VmdkSparseExtent.Write.cs, compressed grains in VmdkSparseExtent.Compressed.cs.
/// Concurrency: table lookups and changes run under <see cref="_meta"/>; data I/O runs outside it.
/// </summary>
internal sealed partial class VmdkSparseExtent : VmdkExtent
{
    /// <summary>The most memory the grain table cache of one extent may hold.</summary>
    private const long CacheBytes = 32L * 1024 * 1024;

    private readonly VmdkSparseLayout _layout;
    private readonly SemaphoreSlim _meta = new(1, 1);
    private readonly Dictionary<long, LinkedListNode<VmdkGrainTable>> _tables = new();
    private readonly LinkedList<VmdkGrainTable> _lru = new();
    private readonly int _cacheCapacity;

    /// <summary>Byte offsets of the grain tables, per directory entry (0: not allocated); and of their redundant copies.</summary>
    private readonly long[] _directory;
    private readonly long[]? _redundant;

    private VmdkSparseExtent(BlockNode file, long start, string type, VmdkSparseLayout layout, long[] directory, long[]? redundant)
        : base(file, start, layout.Sectors * VmdkFormat.SectorSize, type)
    {
        _layout = layout;
        _directory = directory;
        _redundant = redundant;
        _cacheCapacity = (int)Math.Clamp(CacheBytes / layout.TableBytes, 16, int.MaxValue);
        _nextGrain = AlignUp(file.Length, layout.GrainBytes);
        if (layout.Kind == VmdkSparseKind.SeSparse)
        {
            InitSeSparse();
        }
    }

    public VmdkSparseLayout Layout => _layout;

    public override bool IsFlat => false;

    public override bool IsCompressed => _layout.Compressed;

    public override long? GrainSize => _layout.GrainBytes;

    private static long AlignUp(long value, long unit) => (value + unit - 1) / unit * unit;

    /// <summary>
    /// Reads and checks the grain directory (and its redundant copy) of <paramref name="layout"/>:
    /// inside the file, each table inside the file and no two tables overlapping.
    /// </summary>
    public static async ValueTask<VmdkSparseExtent> OpenAsync(BlockNode file, long start, string type, VmdkSparseLayout layout)
    {
        var name = file.FileName;
        if (layout.DirectoryEntries > VmdkFormat.MaxGrainDirectoryEntries)
        {
            throw new BlockException(Errno.EFBIG, $"L1 size too big ({layout.DirectoryEntries} grain directory entries in '{name}')");
        }

        if (layout.Sectors > VmdkFormat.MaxExtentSectors * (layout.GrainBytes / VmdkFormat.SectorSize))
        {
            throw BlockException.Invalid($"vmdk: capacity {layout.Sectors} sectors of '{name}' is too large");
        }

        if (layout.DirectoryEntries * (double)layout.TableSpan < layout.Sectors * (double)VmdkFormat.SectorSize)
        {
            throw BlockException.Invalid(
                $"vmdk: grain directory of '{name}' ({layout.DirectoryEntries} entries of {layout.TableSpan} bytes) does not cover the capacity ({layout.Sectors} sectors)");
        }

        var directory = await ReadDirectoryAsync(file, layout, layout.DirectoryOffset, "grain directory").ConfigureAwait(false);
        long[]? redundant = null;
        if (layout.RedundantDirectoryOffset != 0)
        {
            redundant = await ReadDirectoryAsync(file, layout, layout.RedundantDirectoryOffset, "redundant grain directory").ConfigureAwait(false);
        }

        return new VmdkSparseExtent(file, start, type, layout, directory, redundant);
    }

    private static async ValueTask<long[]> ReadDirectoryAsync(BlockNode file, VmdkSparseLayout layout, long offset, string what)
    {
        var name = file.FileName;
        var bytes = layout.DirectoryEntries * layout.EntrySize;
        if (offset < 0 || offset > file.Length || bytes > file.Length - offset)
        {
            throw BlockException.Invalid(
                $"vmdk: {what} of '{name}' (0x{offset:x}, {layout.DirectoryEntries} entries) lies beyond the end of the file ({file.Length} bytes)");
        }

        var raw = new byte[bytes];
        if (raw.Length > 0)
        {
            await file.ReadAsync(offset, raw).ConfigureAwait(false);
        }

        var tables = new long[layout.DirectoryEntries];
        for (var i = 0; i < tables.Length; i++)
        {
            tables[i] = TableOffset(layout, raw.AsSpan(i * layout.EntrySize), i, name, what);
            if (tables[i] != 0 && (tables[i] > file.Length || layout.TableBytes > file.Length - tables[i]))
            {
                throw BlockException.Invalid(
                    $"vmdk: {what} entry {i} of '{name}' points to a grain table at 0x{tables[i]:x} beyond the end of the file ({file.Length} bytes)");
            }
        }

        CheckNoOverlap(tables, layout.TableBytes, name, what);
        return tables;
    }

    /// <summary>The byte offset of the grain table a directory entry names (0: none).</summary>
    private static long TableOffset(VmdkSparseLayout layout, ReadOnlySpan<byte> entry, int index, string name, string what)
    {
        if (layout.Kind != VmdkSparseKind.SeSparse)
        {
            return BinaryPrimitives.ReadUInt32LittleEndian(entry) * (long)VmdkFormat.SectorSize;
        }

        // seSparse: 0x1000000 in the top 32 bits marks an allocated table; the low 32 bits are its index.
        var value = BinaryPrimitives.ReadUInt64LittleEndian(entry);
        if (value == 0)
        {
            return 0;
        }

        if ((value & 0xffffffff00000000) != 0x1000000000000000)
        {
            throw BlockException.Invalid($"vmdk: seSparse {what} entry {index} of '{name}' is invalid (0x{value:x16})");
        }

        return layout.SeSparseTablesOffset + ((long)(value & 0xffffffff) * layout.TableBytes);
    }

    /// <summary>Two directory entries naming the same or overlapping tables would make one write show in two places.</summary>
    private static void CheckNoOverlap(long[] tables, int tableBytes, string name, string what)
    {
        var sorted = tables.Where(t => t != 0).ToArray();
        Array.Sort(sorted);
        for (var i = 1; i < sorted.Length; i++)
        {
            if (sorted[i] < sorted[i - 1] + tableBytes)
            {
                throw BlockException.Invalid($"vmdk: {what} of '{name}' has overlapping grain tables at 0x{sorted[i - 1]:x} and 0x{sorted[i]:x}");
            }
        }
    }

    public override async ValueTask<VmdkGrain> MapAsync(long offset, long length)
    {
        var inGrain = offset % _layout.GrainBytes;
        var n = Math.Min(length, _layout.GrainBytes - inGrain);
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var entry = await GetEntryLockedAsync(offset / _layout.GrainBytes, allocateTable: false).ConfigureAwait(false);
            return Decode(entry, offset, n);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>The mapping an entry of a grain table gives to [offset, offset+n) (inside one grain).</summary>
    private VmdkGrain Decode(ulong entry, long offset, long n)
    {
        var inGrain = offset % _layout.GrainBytes;
        if (_layout.Kind == VmdkSparseKind.SeSparse)
        {
            switch (entry >> 60)
            {
                case 0 when entry == 0:
                    return new VmdkGrain(VmdkGrainKind.Unallocated, n);
                case 1: // unmapped
                case 2: // zero
                    return new VmdkGrain(VmdkGrainKind.Zero, n);
                case 3:
                    // The grain index is split: bits 48-59 are its low 12 bits, bits 0-47 the rest.
                    var index = (long)(((entry & 0x0fff000000000000) >> 48) | ((entry & 0x0000ffffffffffff) << 12));
                    return new VmdkGrain(VmdkGrainKind.Data, n, CheckHost(_layout.SeSparseGrainsOffset + (index * _layout.GrainBytes), offset) + inGrain);
                default:
                    throw BlockException.Io($"vmdk: invalid seSparse grain table entry 0x{entry:x16} for offset {Start + offset} in '{File.FileName}'");
            }
        }

        if (entry == 0)
        {
            return new VmdkGrain(VmdkGrainKind.Unallocated, n);
        }

        if (entry == VmdkFormat.ZeroGrainEntry && _layout.ZeroGrains)
        {
            return new VmdkGrain(VmdkGrainKind.Zero, n);
        }

        var host = CheckHost((long)entry * VmdkFormat.SectorSize, offset);
        return _layout.Compressed
            ? new VmdkGrain(VmdkGrainKind.Compressed, n, host)
            : new VmdkGrain(VmdkGrainKind.Data, n, host + inGrain);
    }

    private long CheckHost(long host, long offset) =>
        host < File.Length
            ? host
            : throw BlockException.Io($"vmdk: grain for offset {Start + offset} of '{File.FileName}' at 0x{host:x} lies beyond the end of the file ({File.Length} bytes)");

    /// <summary>
    /// The grain table entry of grain <paramref name="grain"/> (0 where the table is not allocated,
    /// unless <paramref name="allocateTable"/>). The caller holds <see cref="_meta"/>.
    /// </summary>
    private async ValueTask<ulong> GetEntryLockedAsync(long grain, bool allocateTable)
    {
        var table = await GetTableLockedAsync(grain / _layout.TableEntries, allocateTable).ConfigureAwait(false);
        return table?.Entries[grain % _layout.TableEntries] ?? 0;
    }

    private async ValueTask<VmdkGrainTable?> GetTableLockedAsync(long index, bool allocate)
    {
        if (index >= _directory.Length)
        {
            throw BlockException.Io($"vmdk: offset beyond the grain directory of '{File.FileName}'");
        }

        var offset = _directory[index];
        if (offset == 0)
        {
            if (!allocate)
            {
                return null;
            }

            if (_layout.Kind == VmdkSparseKind.SeSparse)
            {
                return await AllocateSeSparseTableLockedAsync(index).ConfigureAwait(false);
            }

            offset = await AllocateTableLockedAsync(index).ConfigureAwait(false);
        }

        if (_tables.TryGetValue(offset, out var node))
        {
            _lru.Remove(node);
            _lru.AddFirst(node);
            return node.Value;
        }

        var raw = new byte[_layout.TableBytes];
        await File.ReadAsync(offset, raw).ConfigureAwait(false);
        var table = VmdkGrainTable.Read(raw, _layout.EntrySize, index, offset);
        await MakeRoomLockedAsync().ConfigureAwait(false);
        _tables[offset] = _lru.AddFirst(table);
        return table;
    }

    /// <summary>Evicts the least recently used clean tables (writing dirty ones back first when all are dirty).</summary>
    private async ValueTask MakeRoomLockedAsync()
    {
        while (_tables.Count >= _cacheCapacity)
        {
            var victim = _lru.Last;
            while (victim is not null && victim.Value.Dirty)
            {
                victim = victim.Previous;
            }

            if (victim is null)
            {
                await WriteBackLockedAsync().ConfigureAwait(false);
                continue;
            }

            _lru.Remove(victim);
            _tables.Remove(victim.Value.Offset);
        }
    }
}
