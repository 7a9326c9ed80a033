using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Writes to a seSparse extent. Grain tables are handed out in order from the grain tables area
/// (the volatile header's free_gt_number counts them) and grains from the end of the grains area
/// in use. A new grain's data is written first; at the next write-back, after a flush, come the
/// changed tables (new ones whole) and the volatile header, and after a second flush the directory
/// entries of new tables. A kill at any point therefore leaves entries that name only written
/// data and directory entries that name only written tables. VMware's free-space bitmap, back-map
/// and journal are not kept: grains we allocate are not marked in them.
/// </summary>
internal sealed partial class VmdkSparseExtent
{
    private const ulong SeSparseTableEntry = 0x1000000000000000;
    private const ulong SeSparseUnmapped = 0x1000000000000000;
    private const ulong SeSparseZero = 0x2000000000000000;
    private const ulong SeSparseAllocated = 0x3000000000000000;

    /// <summary>Directory indexes of tables allocated since the last write-back; their entries are written after the tables.</summary>
    private readonly List<long> _pendingDirectory = new();

    /// <summary>The next grain table number to hand out.</summary>
    private long _nextTable;

    /// <summary>Why the layout cannot be written safely (overlapping areas, a table outside its area), or null.</summary>
    private string? _seSparseRefusal;

    /// <summary>
    /// Where allocation resumes: after the highest table in use (or free_gt_number when it is
    /// higher) and after the last grain the file holds, so nothing a crash left behind is reused.
    /// </summary>
    private void InitSeSparse()
    {
        var next = (long)Math.Min(_layout.SeSparseVolatile!.FreeGrainTableNumber, long.MaxValue);
        foreach (var offset in _directory.Where(o => o != 0))
        {
            next = Math.Max(next, ((offset - _layout.SeSparseTablesOffset) / _layout.TableBytes) + 1);
        }

        _nextTable = next;
        var grains = _layout.SeSparseGrainsOffset;
        _nextGrain = grains + AlignUp(Math.Max(0, File.Length - grains), _layout.GrainBytes);
        _usedEnd = File.Length;
        _seSparseRefusal = SeSparseOverlap() ?? TableOutsideArea();
    }

    /// <summary>A directory entry naming a table past the grain tables area: writing that table back could overwrite anything.</summary>
    private string? TableOutsideArea()
    {
        for (var i = 0; i < _directory.Length; i++)
        {
            if (_directory[i] != 0 && (_directory[i] - _layout.SeSparseTablesOffset) / _layout.TableBytes >= _layout.SeSparseTableSlots)
            {
                return $"vmdk: cannot write to the seSparse extent '{File.FileName}': grain directory entry {i} names a table outside the grain tables area";
            }
        }

        return null;
    }

    /// <summary>
    /// An in-place write must land in the grains area: an entry naming a grain elsewhere (which a
    /// read accepts, as QEMU does) would overwrite metadata.
    /// </summary>
    private void CheckSeSparseGrain(long host, long offset)
    {
        var index = (host - _layout.SeSparseGrainsOffset) / _layout.GrainBytes;
        if (host < _layout.SeSparseGrainsOffset || index >= _layout.SeSparseGrainSlots)
        {
            throw BlockException.Io(
                $"vmdk: the grain table entry for offset {Start + offset} of '{File.FileName}' names grain {index} outside the grains area ({_layout.SeSparseGrainSlots} grains); not written");
        }
    }

    private string? SeSparseOverlap()
    {
        var areas = new (string Name, Int128 Start, Int128 Length)[]
        {
            ("const header", 0, SeSparseConstHeader.Size),
            ("volatile header", _layout.SeSparseVolatileOffset, SeSparseVolatileHeader.Size),
            ("grain directory", _layout.DirectoryOffset, (Int128)_layout.DirectoryEntries * 8),
            ("grain tables", _layout.SeSparseTablesOffset, (Int128)_layout.SeSparseTableSlots * _layout.TableBytes),
            ("grains", _layout.SeSparseGrainsOffset, (Int128)_layout.SeSparseGrainSlots * _layout.GrainBytes),
        };
        for (var i = 0; i < areas.Length; i++)
        {
            for (var j = i + 1; j < areas.Length; j++)
            {
                var (a, b) = (areas[i], areas[j]);
                if (a.Length > 0 && b.Length > 0 && a.Start < b.Start + b.Length && b.Start < a.Start + a.Length)
                {
                    return $"vmdk: cannot write to the seSparse extent '{File.FileName}': its {a.Name} area overlaps its {b.Name} area";
                }
            }
        }

        return null;
    }

    /// <summary>The allocated-grain entry for grain <paramref name="index"/>: its low 12 bits in bits 48-59, the rest in bits 0-47.</summary>
    private static ulong SeSparseGrainEntry(long index) =>
        SeSparseAllocated | ((ulong)(index & 0xfff) << 48) | ((ulong)index >> 12);

    /// <summary>The next table of the grain tables area, empty and dirty in the cache. The caller holds <see cref="_meta"/>.</summary>
    private async ValueTask<VmdkGrainTable> AllocateSeSparseTableLockedAsync(long index)
    {
        if (_nextTable >= _layout.SeSparseTableSlots)
        {
            throw new BlockException(Errno.ENOSPC,
                $"vmdk: the grain tables area of the seSparse extent '{File.FileName}' is full ({_layout.SeSparseTableSlots} tables)");
        }

        // Room first: a write-back it may start must not see the directory entry before the table exists.
        await MakeRoomLockedAsync().ConfigureAwait(false);
        var offset = _layout.SeSparseTablesOffset + (_nextTable * _layout.TableBytes);
        _nextTable++;
        await EnsureLengthLockedAsync(offset + _layout.TableBytes).ConfigureAwait(false);
        var table = new VmdkGrainTable(new ulong[_layout.TableEntries], _layout.EntrySize, index, offset) { Dirty = true };
        _directory[index] = offset;
        _pendingDirectory.Add(index);
        _tables[offset] = _lru.AddFirst(table);
        return table;
    }

    /// <summary>
    /// After the tables are written: the volatile header with the new free_gt_number, a flush, then
    /// the directory entries of the new tables. The caller holds <see cref="_meta"/>.
    /// </summary>
    private async ValueTask WritePendingDirectoryLockedAsync()
    {
        if (_pendingDirectory.Count == 0)
        {
            return;
        }

        var header = new byte[SeSparseVolatileHeader.Size];
        (_layout.SeSparseVolatile! with { FreeGrainTableNumber = (ulong)_nextTable }).Write(header);
        await File.WriteAsync(_layout.SeSparseVolatileOffset, header).ConfigureAwait(false);
        await File.FlushAsync().ConfigureAwait(false);
        var entry = new byte[8];
        foreach (var index in _pendingDirectory)
        {
            var number = (_directory[index] - _layout.SeSparseTablesOffset) / _layout.TableBytes;
            BinaryPrimitives.WriteUInt64LittleEndian(entry, SeSparseTableEntry | (ulong)number);
            await File.WriteAsync(_layout.DirectoryOffset + (index * 8), entry).ConfigureAwait(false);
        }

        _pendingDirectory.Clear();
    }

    /// <summary>
    /// Marks the whole allocated grains of [offset, offset+length) unmapped (they read as zeroes);
    /// their space is not reused. Tables not allocated are skipped whole.
    /// </summary>
    public async ValueTask UnmapAsync(long offset, long length)
    {
        var first = (offset + _layout.GrainBytes - 1) / _layout.GrainBytes;
        var end = Math.Min(offset + length, Length) / _layout.GrainBytes;
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            for (var grain = first; grain < end;)
            {
                var tableIndex = grain / _layout.TableEntries;
                var tableEnd = Math.Min(end, (tableIndex + 1) * _layout.TableEntries);
                if (_directory[tableIndex] != 0)
                {
                    var table = (await GetTableLockedAsync(tableIndex, allocate: false).ConfigureAwait(false))!;
                    for (var g = grain; g < tableEnd; g++)
                    {
                        ref var e = ref table.Entries[g % _layout.TableEntries];
                        if (e >> 60 == 3)
                        {
                            e = SeSparseUnmapped;
                            table.Dirty = true;
                        }
                    }
                }

                grain = tableEnd;
            }
        }
        finally
        {
            _meta.Release();
        }
    }
}
