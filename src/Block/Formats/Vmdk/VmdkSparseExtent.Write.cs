using System.Buffers;
using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Writes to a sparse extent. A write to an allocated grain goes in place; a write to an
/// unallocated or zeroed grain allocates a whole grain at the end of the file, fills it (the parent's
/// data or zeroes around the new bytes) and only then points the grain table at it. Changed tables
/// stay in the cache and are written back on flush (the file flushed first), so a crash loses at
/// most unflushed writes and leaves grains past the end that no table names.
/// </summary>
internal sealed partial class VmdkSparseExtent
{
    /// <summary>Serialises writes that may allocate the same grain.</summary>
    private readonly RangeLock _grainLocks = new();

    /// <summary>The file grows by this much at a time, and is cut back to what is used when the node closes.</summary>
    private const long FileGrowthStep = 16 * 1024 * 1024;

    /// <summary>Where the next grain goes: the end of the file, grain-aligned at open (QEMU's next_cluster_sector).</summary>
    private long _nextGrain;

    /// <summary>Where the extent's use of its file ends; the file may reach further by a growth step.</summary>
    private long _usedEnd;

    /// <summary>Why this extent cannot be written, or null.</summary>
    public string? WriteRefusal => _layout switch
    {
        { Kind: VmdkSparseKind.SeSparse } => _seSparseRefusal,
        { ReadOnlyVersion: true } => "VMDK version 3 must be read only",
        { DirectoryAtEnd: true } => $"vmdk: cannot write to the stream-optimized image '{File.FileName}': its grain directory is at its end",
        _ => null,
    };

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> (inside one grain). For a new grain,
    /// <paramref name="readBelow"/> supplies what the image shows under this layer (zeroes without a parent).
    /// </summary>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, Func<long, Memory<byte>, ValueTask> readBelow)
    {
        var grainStart = offset - (offset % _layout.GrainBytes);
        using var range = await _grainLocks.AcquireAsync(grainStart, _layout.GrainBytes).ConfigureAwait(false);
        var m = await MapAsync(offset, data.Length).ConfigureAwait(false);
        if (m.Kind == VmdkGrainKind.Data)
        {
            if (_layout.Kind == VmdkSparseKind.SeSparse)
            {
                CheckSeSparseGrain(m.HostOffset - (offset % _layout.GrainBytes), offset);
            }

            await File.WriteAsync(m.HostOffset, data).ConfigureAwait(false);
            return;
        }

        if (_layout.Compressed)
        {
            await WriteCompressedLockedAsync(offset, data, m).ConfigureAwait(false);
            return;
        }

        var grainLength = (int)Math.Min(_layout.GrainBytes, Length - grainStart);
        var buffer = ArrayPool<byte>.Shared.Rent((int)_layout.GrainBytes);
        try
        {
            var grain = buffer.AsMemory(0, (int)_layout.GrainBytes);
            grain.Span.Clear();
            if (m.Kind == VmdkGrainKind.Unallocated)
            {
                await readBelow(Start + grainStart, grain[..grainLength]).ConfigureAwait(false);
            }

            data.CopyTo(grain[(int)(offset - grainStart)..]);
            var host = await ReserveAsync(grainStart, _layout.GrainBytes).ConfigureAwait(false);
            await File.WriteAsync(host, grain).ConfigureAwait(false);
            await SetEntryAsync(grainStart, GrainEntry(host)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The table entry naming a grain written at <paramref name="host"/>.</summary>
    private ulong GrainEntry(long host) =>
        _layout.Kind == VmdkSparseKind.SeSparse
            ? SeSparseGrainEntry((host - _layout.SeSparseGrainsOffset) / _layout.GrainBytes)
            : (ulong)(host / VmdkFormat.SectorSize);

    /// <summary>
    /// Makes the whole grain at <paramref name="offset"/> read as zeroes by its table entry when the
    /// extent has zeroed grains (seSparse: a zero entry, or an unmapped one when
    /// <paramref name="unmap"/>); false when it cannot (the caller writes zeroes instead).
    /// </summary>
    public async ValueTask<bool> TryZeroGrainAsync(long offset, bool unmap)
    {
        var seSparse = _layout.Kind == VmdkSparseKind.SeSparse;
        if (!(_layout.ZeroGrains || seSparse) || _layout.Compressed || offset % _layout.GrainBytes != 0)
        {
            return false;
        }

        var zeroEntry = !seSparse ? VmdkFormat.ZeroGrainEntry : unmap ? SeSparseUnmapped : SeSparseZero;

        using var range = await _grainLocks.AcquireAsync(offset, _layout.GrainBytes).ConfigureAwait(false);
        var m = await MapAsync(offset, _layout.GrainBytes).ConfigureAwait(false);
        if (m.Kind != VmdkGrainKind.Zero)
        {
            await SetEntryAsync(offset, zeroEntry).ConfigureAwait(false);
        }

        return true;
    }

    /// <summary>Reserves <paramref name="bytes"/> at the end of the file for the grain at <paramref name="grainStart"/>, its table allocated first.</summary>
    private async ValueTask<long> ReserveAsync(long grainStart, long bytes)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            await GetTableLockedAsync(grainStart / _layout.TableSpan, allocate: true).ConfigureAwait(false);
            var host = _nextGrain;
            if (_layout.Kind == VmdkSparseKind.SeSparse)
            {
                if ((host - _layout.SeSparseGrainsOffset) / _layout.GrainBytes >= _layout.SeSparseGrainSlots)
                {
                    throw new BlockException(Errno.ENOSPC,
                        $"vmdk: the grains area of the seSparse extent '{File.FileName}' is full ({_layout.SeSparseGrainSlots} grains)");
                }
            }
            else if ((host + bytes) / VmdkFormat.SectorSize > VmdkFormat.MaxExtentSectors)
            {
                throw new BlockException(Errno.ENOSPC, $"vmdk: extent '{File.FileName}' is full (grain offsets are 32-bit sector numbers)");
            }

            // seSparse grains count from the grains area, which need not be grain-aligned in the file.
            _nextGrain = _layout.Kind == VmdkSparseKind.SeSparse
                ? host + bytes
                : AlignUp(host + bytes, _layout.Compressed ? VmdkFormat.SectorSize : _layout.GrainBytes);
            await EnsureLengthLockedAsync(host + bytes).ConfigureAwait(false);
            return host;
        }
        finally
        {
            _meta.Release();
        }
    }

    private async ValueTask SetEntryAsync(long grainStart, ulong value)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var grain = grainStart / _layout.GrainBytes;
            var table = (await GetTableLockedAsync(grain / _layout.TableEntries, allocate: true).ConfigureAwait(false))!;
            table.Entries[grain % _layout.TableEntries] = value;
            table.Dirty = true;
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// A new, empty grain table (and its redundant copy) at the end of the file, written and flushed
    /// before the directory entries that name it. The caller holds <see cref="_meta"/>.
    /// </summary>
    private async ValueTask<long> AllocateTableLockedAsync(long index)
    {
        var tableBytes = AlignUp(_layout.TableBytes, VmdkFormat.SectorSize);
        var step = AlignUp(tableBytes, _layout.Compressed ? VmdkFormat.SectorSize : _layout.GrainBytes);
        var primary = _nextGrain;
        var copy = _redundant is null ? 0 : primary + step;
        _nextGrain += _redundant is null ? step : 2 * step;
        await EnsureLengthLockedAsync(_nextGrain).ConfigureAwait(false);
        var zero = new byte[tableBytes];
        await File.WriteAsync(primary, zero).ConfigureAwait(false);
        if (copy != 0)
        {
            await File.WriteAsync(copy, zero).ConfigureAwait(false);
        }

        await File.FlushAsync().ConfigureAwait(false);
        await WriteDirectoryEntryAsync(_layout.DirectoryOffset, index, primary).ConfigureAwait(false);
        _directory[index] = primary;
        if (copy != 0)
        {
            await WriteDirectoryEntryAsync(_layout.RedundantDirectoryOffset, index, copy).ConfigureAwait(false);
            _redundant![index] = copy;
        }

        return primary;
    }

    /// <summary>Grows the file (a step at a time) so that [0, end) can be written. The caller holds <see cref="_meta"/>.</summary>
    private async ValueTask EnsureLengthLockedAsync(long end)
    {
        _usedEnd = Math.Max(_usedEnd, end);
        if (File.Length < end)
        {
            await File.TruncateAsync(AlignUp(end, FileGrowthStep)).ConfigureAwait(false);
        }
    }

    /// <summary>Writes back the tables and cuts the growth step that was never used.</summary>
    public override async ValueTask CloseAsync()
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            await WriteBackLockedAsync().ConfigureAwait(false);
            if (_usedEnd > 0 && File.Length > _usedEnd)
            {
                await File.TruncateAsync(_usedEnd).ConfigureAwait(false);
            }
        }
        finally
        {
            _meta.Release();
        }
    }

    private async ValueTask WriteDirectoryEntryAsync(long directory, long index, long tableOffset)
    {
        var entry = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)(tableOffset / VmdkFormat.SectorSize));
        await File.WriteAsync(directory + (index * 4), entry).ConfigureAwait(false);
    }

    public override async ValueTask WriteBackAsync()
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            await WriteBackLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Flushes the grains written so far, then writes every dirty table and its redundant copy
    /// (seSparse: then the directory entries of new tables).
    /// </summary>
    private async ValueTask WriteBackLockedAsync()
    {
        var dirty = _lru.Where(t => t.Dirty).ToList();
        if (dirty.Count == 0)
        {
            return;
        }

        await File.FlushAsync().ConfigureAwait(false);
        var raw = new byte[_layout.TableBytes];
        foreach (var table in dirty)
        {
            table.Write(raw);
            await File.WriteAsync(table.Offset, raw).ConfigureAwait(false);
            if (_redundant is not null && _redundant[table.DirectoryIndex] is var copy and not 0)
            {
                await File.WriteAsync(copy, raw).ConfigureAwait(false);
            }

            table.Dirty = false;
        }

        await WritePendingDirectoryLockedAsync().ConfigureAwait(false);
    }
}
