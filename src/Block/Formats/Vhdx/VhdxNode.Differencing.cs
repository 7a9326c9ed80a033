using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// A differencing image: a NOT_PRESENT block shows its parent (the backing node); a
/// PARTIALLY_PRESENT block has storage here and its chunk's sector bitmap says, one bit per logical
/// sector, whether the sector comes from this file (1) or from the parent (0). Other states without
/// storage read as zeroes, as in any image. A write into a NOT_PRESENT block gives it storage and
/// sets the bits of the sectors written (the rest still shows the parent); into a PARTIALLY_PRESENT
/// one it writes in place, then sets the bits. Data is flushed before any bit naming it is set, and
/// the bitmap sectors and BAT sectors of one change go in one log entry.
/// </summary>
internal sealed partial class VhdxNode
{
    /// <summary>Bits of sector bitmap per 4 KiB sector of it.</summary>
    private const int BitsPerBitmapSector = VhdxFormat.LogSectorSize * 8;

    private static readonly ReadOnlyMemory<byte> s_zeroes = new byte[VhdxFormat.MiB];

    private readonly bool _differencing;
    private readonly uint _sectorSize;

    /// <summary>The parent locator keys tried in turn for the parent's file name (QEMU has no differencing vhdx; these are the specification's).</summary>
    private static readonly string[] s_parentPathKeys = ["relative_path", "absolute_win32_path", "volume_path"];

    internal void AttachBacking(BlockNode backing) => AttachChild("backing", ChildRole.Backing, backing);

    /// <summary>The backing file the image names: its locator's relative path, else its absolute or volume path.</summary>
    public BackingFileName? BackingFile => ParentFileName(_metadata, FileName) is { } name ? new BackingFileName(name, "vhdx") : null;

    /// <summary>
    /// The parent's file name from the locator of a differencing image (null for any other): the first of
    /// relative_path, absolute_win32_path, volume_path that names an existing file, with Windows
    /// separators turned into '/'; else the first given, so that the error names it.
    /// </summary>
    public static string? ParentFileName(VhdxMetadata metadata, string imageFileName)
    {
        if (!metadata.HasParentImage)
        {
            return null;
        }

        var names = s_parentPathKeys
            .Select(k => metadata.ParentLocator.GetValueOrDefault(k))
            .Where(v => !string.IsNullOrEmpty(v))
            .Select(v => v!.Replace('\\', '/'))
            .ToList();
        if (names.Count == 0)
        {
            throw BlockException.Invalid("vhdx: the parent locator of a differencing image has none of 'relative_path', 'absolute_win32_path', 'volume_path'");
        }

        return names.FirstOrDefault(n => File.Exists(BackingFileName.Resolve(imageFileName, n))) ?? names[0];
    }

    /// <summary>
    /// The parent must be the state this image was made from: a vhdx parent's data write GUID is the
    /// locator's parent_linkage (or parent_linkage2). A parent of another format has none to compare.
    /// </summary>
    public void CheckParent()
    {
        if (BackingLayer is not VhdxNode parent || !_metadata.ParentLocator.TryGetValue("parent_linkage", out var linkage))
        {
            return;
        }

        var accepted = new[] { linkage, _metadata.ParentLocator.GetValueOrDefault("parent_linkage2") }
            .Where(v => v is not null)
            .Select(v => Guid.TryParse(v, out var g) ? g : throw BlockException.Invalid($"vhdx: parent locator linkage '{v}' is not a GUID"));
        if (!accepted.Contains(parent.DataWriteGuid))
        {
            throw BlockException.Invalid(
                $"vhdx: '{FileName}' was made from another state of its parent: its parent_linkage is {linkage}, the data write GUID of '{parent.FileName}' is {{{parent.DataWriteGuid}}}");
        }
    }

    private async ValueTask ReadDifferencingAsync(long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var n = BlockMapping.ChunkAt(offset, buffer.Length, _blockSize);
            var entry = _table[offset / _blockSize];
            switch (entry & VhdxBlockTable.StateMask)
            {
                case VhdxBlockTable.FullyPresent:
                    await _source.ReadAsync((long)(entry & VhdxBlockTable.OffsetMask) + (offset % _blockSize), buffer[..n]).ConfigureAwait(false);
                    break;
                case VhdxBlockTable.NotPresent:
                    await ReadParentAsync(offset, buffer[..n]).ConfigureAwait(false);
                    break;
                case VhdxBlockTable.PartiallyPresent:
                    await ReadPartialAsync(entry, offset, buffer[..n]).ConfigureAwait(false);
                    break;
                default:
                    buffer.Span[..n].Clear();
                    break;
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>A part of one PARTIALLY_PRESENT block: runs of sectors alike in the bitmap, from this file or the parent.</summary>
    private async ValueTask ReadPartialAsync(ulong entry, long offset, Memory<byte> buffer)
    {
        var bits = await ReadBitmapAsync(offset, buffer.Length).ConfigureAwait(false);
        var host = (long)(entry & VhdxBlockTable.OffsetMask) + (offset % _blockSize);
        long done = 0;
        while (done < buffer.Length)
        {
            var (run, present) = bits.Run(done / _sectorSize, (buffer.Length - done) / _sectorSize);
            var part = buffer.Slice((int)done, (int)(run * _sectorSize));
            if (present)
            {
                await _source.ReadAsync(host + done, part).ConfigureAwait(false);
            }
            else
            {
                await ReadParentAsync(offset + done, part).ConfigureAwait(false);
            }

            done += part.Length;
        }
    }

    private ValueTask ReadParentAsync(long offset, Memory<byte> buffer) => BlockMapping.ReadBackingAsync(BackingChild?.Node, offset, buffer);

    /// <summary>The bits of the sectors of [offset, offset+length) (inside one block) from the chunk's sector bitmap block.</summary>
    private async ValueTask<SectorBits> ReadBitmapAsync(long offset, long length)
    {
        var (bitmap, first) = BitmapPosition(offset);
        var count = length / _sectorSize;
        var from = first / 8;
        var bytes = new byte[((first + count + 7) / 8) - from];
        await _source.ReadAsync(bitmap + from, bytes).ConfigureAwait(false);
        return new SectorBits(bytes, (int)(first % 8));
    }

    /// <summary>The file offset of the sector bitmap block of <paramref name="offset"/>'s chunk, and the index of its sector in the chunk.</summary>
    private (long Bitmap, long Sector) BitmapPosition(long offset)
    {
        var chunk = _table.ChunkOf(offset / _blockSize);
        var chunkStart = chunk * (VhdxFormat.MaxSectorsPerBlock * _sectorSize);
        return ((long)(_table.Bitmap(chunk) & VhdxBlockTable.OffsetMask), (offset - chunkStart) / _sectorSize);
    }

    /// <summary>
    /// This layer only: NOT_PRESENT blocks and the parent's sectors of a PARTIALLY_PRESENT one are
    /// reported without Allocated, so the caller asks the parent.
    /// </summary>
    private async ValueTask<BlockStatus> DifferencingStatusAsync(long offset, long length)
    {
        var n = (long)BlockMapping.ChunkAt(offset, length, _blockSize);
        var state = _table[offset / _blockSize] & VhdxBlockTable.StateMask;
        switch (state)
        {
            case VhdxBlockTable.FullyPresent:
                return new BlockStatus(n, BlockStatusFlags.Data | BlockStatusFlags.Allocated);
            case VhdxBlockTable.PartiallyPresent:
                var bits = await ReadBitmapAsync(offset, n).ConfigureAwait(false);
                var (run, present) = bits.Run(0, n / _sectorSize);
                return new BlockStatus(run * _sectorSize, present ? BlockStatusFlags.Data | BlockStatusFlags.Allocated : BlockStatusFlags.None);
            case VhdxBlockTable.NotPresent:
                while (n < length && (_table[(offset + n) / _blockSize] & VhdxBlockTable.StateMask) == VhdxBlockTable.NotPresent)
                {
                    n += BlockMapping.ChunkAt(offset + n, length - n, _blockSize);
                }

                return new BlockStatus(n, BlockStatusFlags.None);
            default:
                return new BlockStatus(n, BlockStatusFlags.Zero | BlockStatusFlags.Allocated);
        }
    }

    /// <summary>A write inside one block of a differencing image that has no FULLY_PRESENT storage for it.</summary>
    private async ValueTask WriteDifferencingAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var block = offset / _blockSize;
            var entry = _table[block];
            var host = (long)(entry & VhdxBlockTable.OffsetMask) + (offset % _blockSize);
            switch (entry & VhdxBlockTable.StateMask)
            {
                case VhdxBlockTable.FullyPresent:
                    await _file.WriteAsync(host, data).ConfigureAwait(false);
                    break;
                case VhdxBlockTable.PartiallyPresent:
                    await _file.WriteAsync(host, data).ConfigureAwait(false);
                    await _file.FlushAsync().ConfigureAwait(false);
                    var bits = await SetBitsAsync(offset, data.Length).ConfigureAwait(false);
                    if (bits.Count > 0)
                    {
                        await WriteThroughLogAsync(bits).ConfigureAwait(false);
                    }

                    break;
                case VhdxBlockTable.NotPresent when data.Length < _blockSize:
                    await AllocatePartialLockedAsync(block, offset, data).ConfigureAwait(false);
                    break;
                default:
                    // A whole block, or a block that reads as zeroes (not the parent): all of it comes from here.
                    await AllocateFullLockedAsync(offset, data).ConfigureAwait(false);
                    break;
            }
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Storage for a NOT_PRESENT block (and for its chunk's sector bitmap when it has none), the data
    /// written and flushed, then the bits, the block's entry (PARTIALLY_PRESENT) and the bitmap entry
    /// through one log entry.
    /// </summary>
    private async ValueTask AllocatePartialLockedAsync(long block, long offset, ReadOnlyMemory<byte> data)
    {
        await StartLogAsync().ConfigureAwait(false);
        var chunk = _table.ChunkOf(block);
        var previousBitmap = _table.Bitmap(chunk);
        var newBitmap = (previousBitmap & VhdxBlockTable.StateMask) != VhdxBlockTable.BitmapPresent;
        var bitmap = newBitmap ? await GrowAsync(VhdxBlockTable.BitmapBlockSize).ConfigureAwait(false) : 0;
        var start = await GrowAsync(_blockSize).ConfigureAwait(false);
        await _file.WriteAsync(start + (offset % _blockSize), data).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var previous = _table[block];
        _table.Set(block, (ulong)start | VhdxBlockTable.PartiallyPresent);
        if (newBitmap)
        {
            _table.SetBitmap(chunk, (ulong)bitmap | VhdxBlockTable.BitmapPresent);
        }

        try
        {
            var sectors = await SetBitsAsync(offset, data.Length).ConfigureAwait(false);
            var blockSector = TableSector(_table.IndexOf(block));
            sectors.Add(blockSector);
            var bitmapSector = TableSector(_table.BitmapIndexOf(chunk));
            if (newBitmap && bitmapSector.At != blockSector.At)
            {
                sectors.Add(bitmapSector);
            }

            await WriteThroughLogAsync(sectors).ConfigureAwait(false);
        }
        catch
        {
            _table.Set(block, previous);
            _table.SetBitmap(chunk, previousBitmap);
            throw;
        }
    }

    /// <summary>
    /// The 4 KiB sectors of the sector bitmap that change when the sectors of [offset, offset+length)
    /// are marked present, as they will be, with their file offsets (none when all are already set).
    /// </summary>
    private async ValueTask<List<(long At, byte[] Sector)>> SetBitsAsync(long offset, long length)
    {
        var (bitmap, first) = BitmapPosition(offset);
        var end = first + (length / _sectorSize);
        var changed = new List<(long, byte[])>();
        for (var s = first / BitsPerBitmapSector; s * BitsPerBitmapSector < end; s++)
        {
            var sector = new byte[VhdxFormat.LogSectorSize];
            var at = bitmap + (s * VhdxFormat.LogSectorSize);
            await _file.ReadAsync(at, sector).ConfigureAwait(false);
            var any = false;
            for (var i = Math.Max(first, s * BitsPerBitmapSector); i < Math.Min(end, (s + 1) * BitsPerBitmapSector); i++)
            {
                var bit = (int)(i - (s * BitsPerBitmapSector));
                var mask = (byte)(1 << (bit % 8));
                any |= (sector[bit / 8] & mask) == 0;
                sector[bit / 8] |= mask;
            }

            if (any)
            {
                changed.Add((at, sector));
            }
        }

        return changed;
    }

    /// <summary>
    /// Zeroes in a differencing image: FULLY_PRESENT storage is zeroed in place; blocks that read as
    /// zeroes are left; where the parent shows through, zeroes are written (so this layer hides it).
    /// </summary>
    private async ValueTask ZeroDifferencingAsync(long offset, long length, ZeroFlags flags)
    {
        var end = offset + length;
        while (offset < end)
        {
            var n = (int)Math.Min(BlockMapping.ChunkAt(offset, end - offset, _blockSize), s_zeroes.Length);
            var entry = _table[offset / _blockSize];
            switch (entry & VhdxBlockTable.StateMask)
            {
                case VhdxBlockTable.FullyPresent:
                    await _file.WriteZeroesAsync((long)(entry & VhdxBlockTable.OffsetMask) + (offset % _blockSize), n, flags).ConfigureAwait(false);
                    break;
                case VhdxBlockTable.NotPresent or VhdxBlockTable.PartiallyPresent:
                    await WriteDifferencingAsync(offset, s_zeroes[..n]).ConfigureAwait(false);
                    break;
            }

            offset += n;
        }
    }

    /// <summary>Bits of a sector bitmap window: bit <c>i</c> is sector <c>i</c> of the request (present in this file when set).</summary>
    private readonly record struct SectorBits(byte[] Bytes, int Shift)
    {
        public bool this[long i] => ((Bytes[(i + Shift) / 8] >> (int)((i + Shift) % 8)) & 1) != 0;

        /// <summary>The length of the run of sectors alike from <paramref name="from"/> (at most <paramref name="max"/>), and whether they are present.</summary>
        public (long Length, bool Present) Run(long from, long max)
        {
            var present = this[from];
            var n = 1L;
            while (n < max && this[from + n] == present)
            {
                n++;
            }

            return (n, present);
        }
    }
}
