using System.Buffers;
using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>
/// A VDI image as a block node: guest blocks of 1 MiB mapped through the block map; an unallocated
/// (or discarded) block reads as zeroes. A static image has every block allocated up front.
/// An allocating write maps a new data block in memory and writes it: only the data when the block
/// lies past the end the file had at open (this node grew the file there, so the rest reads as
/// zeroes), else the whole block with zeroes around the data; the header's count and
/// the map entries reach the file at the next flush (or close), after the data blocks are flushed, so
/// the map never points at a block that is not on disk and a kill loses only writes not yet flushed.
/// The header goes first, so a kill between the two leaves at worst an unused data block, never two
/// map entries sharing one.
/// </summary>
internal sealed class VdiNode : BlockNode, IImageInfoSource
{
    /// <summary>Header and map entries up to here are written with one request (one page, so a kill cannot tear them).</summary>
    private const int CombinedWriteLimit = 4096;

    private readonly BlockNode _file;
    private readonly VdiHeader _header;

    /// <summary>The header as read: rewritten with only the allocated-block count changed, so fields this driver ignores are kept.</summary>
    private readonly byte[] _headerBytes;
    private readonly VdiBlockMap _map;
    private readonly SemaphoreSlim _allocation = new(1, 1);
    private uint _nextDataBlock;

    /// <summary>The range of map entries changed in memory since the last flush (empty when first &gt; last); under <see cref="_allocation"/>.</summary>
    private int _firstDirty = int.MaxValue;
    private int _lastDirty = -1;

    private VdiNode(string nodeName, bool readOnly, BlockNode file, byte[] headerBytes, VdiHeader header, VdiBlockMap map, uint nextDataBlock)
        : base(nodeName, readOnly)
    {
        _file = file;
        _headerBytes = headerBytes;
        _header = header;
        _map = map;
        _nextDataBlock = nextDataBlock;
        _zeroFrom = file.Length;
        Length = (long)header.DiskSize;
        Limits = new BlockLimits(OptimalTransfer: VdiFormat.BlockSize);
        Capabilities = new BlockCapabilities(WriteZeroes: true, FastZero: file.CanFastZero);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "vdi";

    /// <summary>QEMU's vdi_get_info: the block is the cluster.</summary>
    public BlockDriverInfo? DriverInfo => new(VdiFormat.BlockSize, false);

    public static async ValueTask<VdiNode> OpenAsync(string nodeName, bool readOnly, BlockNode file)
    {
        var fileLength = file.Length;
        var bytes = new byte[VdiFormat.HeaderSize];
        await file.ReadAsync(0, bytes.AsMemory(0, (int)Math.Min(fileLength, bytes.Length))).ConfigureAwait(false);
        var header = VdiHeader.Read(bytes);
        if (header.BlockMapOffset < VdiFormat.HeaderSize)
        {
            throw BlockException.Invalid($"vdi: block map offset 0x{header.BlockMapOffset:x} overlaps the header");
        }

        if (header.BlockMapOffset + header.BlockMapBytes > fileLength)
        {
            throw BlockException.Invalid(
                $"vdi: block map (offset 0x{header.BlockMapOffset:x}, {header.BlocksInImage} blocks in image) extends beyond the end of the file");
        }

        if (header.DataOffset < header.BlockMapOffset + header.BlockMapBytes)
        {
            throw BlockException.Invalid($"vdi: data offset 0x{header.DataOffset:x} overlaps the block map");
        }

        var raw = new byte[header.BlockMapBytes];
        if (raw.Length > 0)
        {
            await file.ReadAsync(header.BlockMapOffset, raw).ConfigureAwait(false);
        }

        var map = VdiBlockMap.Read(raw, (int)header.BlocksInImage);
        map.Validate(Math.Max(0, fileLength - header.DataOffset) / VdiFormat.BlockSize);
        var next = header.BlocksAllocated;
        for (var i = 0; i < map.Count; i++)
        {
            if (VdiFormat.IsAllocated(map[i]))
            {
                next = Math.Max(next, map[i] + 1);
            }
        }

        return new VdiNode(nodeName, readOnly, file, bytes, header, map, next);
    }

    private long HostOffset(long offset)
    {
        var entry = _map[(int)(offset / VdiFormat.BlockSize)];
        return VdiFormat.IsAllocated(entry) ? _header.DataOffset + ((long)entry * VdiFormat.BlockSize) + (offset % VdiFormat.BlockSize) : -1;
    }

    private static int ChunkAt(long offset, long length) => BlockMapping.ChunkAt(offset, length, VdiFormat.BlockSize);

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        BlockMapping.ReadAsync(_file, offset, buffer, VdiFormat.BlockSize, HostOffset);

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        while (buffer.Length > 0)
        {
            var n = ChunkAt(offset, buffer.Length);
            var host = HostOffset(offset);
            if (host < 0)
            {
                await AllocateAsync((int)(offset / VdiFormat.BlockSize), (int)(offset % VdiFormat.BlockSize), buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await _file.WriteAsync(host, buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>
    /// Zeroes without allocating: an unallocated block already reads as zeroes (the map has no state
    /// that says more), an allocated one has its file zero the range in place. Blocks are never
    /// unmapped: QEMU numbers the next data block by the header's allocated count, so a freed one
    /// would be handed out twice.
    /// </summary>
    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        BlockMapping.WriteZeroesAsync(offset, length, VdiFormat.BlockSize, HostOffset,
            (o, n) => _file.WriteZeroesAsync(HostOffset(o), n, flags));

    /// <summary>
    /// Allocated blocks: data (a static image's ask the file, which knows its holes); unallocated
    /// runs read as zeroes (QEMU's vdi_co_block_status).
    /// </summary>
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var host = HostOffset(offset);
        if (host < 0 || !_header.IsStatic)
        {
            return BlockMapping.Status(offset, length, VdiFormat.BlockSize, HostOffset);
        }

        var inFile = await _file.GetBlockStatusAsync(host, ChunkAt(offset, length)).ConfigureAwait(false);
        return inFile with { Flags = inFile.Flags | BlockStatusFlags.Allocated };
    }

    /// <summary>
    /// A new data block for guest block <paramref name="block"/>. Past <see cref="_zeroFrom"/> the block
    /// is mapped under the lock and the data written after it, so allocations do not wait on each
    /// other's data: until the data lands the block reads as zeroes, as it did unallocated, and a
    /// flush meanwhile may record the mapping of a block of zeroes, never of stale bytes.
    /// </summary>
    private async ValueTask AllocateAsync(int block, int inBlock, ReadOnlyMemory<byte> data)
    {
        long host;
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            if (HostOffset(((long)block * VdiFormat.BlockSize) + inBlock) is var existing and >= 0)
            {
                host = existing;
            }
            else
            {
                if (_nextDataBlock >= _header.BlocksInImage)
                {
                    throw new BlockException(Errno.ENOSPC, "vdi: every data block of the image is in use");
                }

                var start = _header.DataOffset + ((long)_nextDataBlock * VdiFormat.BlockSize);
                if (start < _zeroFrom)
                {
                    await WriteWholeBlockAsync(start, inBlock, data).ConfigureAwait(false);
                    Map(block);
                    return;
                }

                if (_file.Length < start + VdiFormat.BlockSize)
                {
                    // Whole steps, not one ftruncate per block (a journal transaction each, that
                    // allocating writes waited on); the unused rest is cut off at close.
                    await _file.TruncateAsync(start + FileGrowthStep).ConfigureAwait(false);
                    _grown = true;
                }

                Map(block);
                host = start + inBlock;
            }
        }
        finally
        {
            _allocation.Release();
        }

        await _file.WriteAsync(host, data).ConfigureAwait(false);
    }

    /// <summary>The next data block becomes <paramref name="block"/>'s, in memory; the caller holds the allocation lock.</summary>
    private void Map(int block)
    {
        _map.Set(block, _nextDataBlock);
        _nextDataBlock++;
        _header.BlocksAllocated++;
        _firstDirty = Math.Min(_firstDirty, block);
        _lastDirty = Math.Max(_lastDirty, block);
    }

    /// <summary>A block where the file may hold old bytes (left by a kill before its mapping was flushed): written whole, zeroes around the data.</summary>
    private async ValueTask WriteWholeBlockAsync(long start, int inBlock, ReadOnlyMemory<byte> data)
    {
        var whole = ArrayPool<byte>.Shared.Rent(VdiFormat.BlockSize);
        try
        {
            whole.AsSpan(0, VdiFormat.BlockSize).Clear();
            data.Span.CopyTo(whole.AsSpan(inBlock));
            await _file.WriteAsync(start, whole.AsMemory(0, VdiFormat.BlockSize)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(whole);
        }
    }

    protected override async ValueTask FlushCoreAsync()
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            await WriteMetadataLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _allocation.Release();
        }

        await _file.FlushAsync().ConfigureAwait(false);
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (!IsReadOnly)
        {
            await FlushCoreAsync().ConfigureAwait(false);
            var dataEnd = _header.DataOffset + ((long)_nextDataBlock * VdiFormat.BlockSize);
            if (_grown && _file.Length > dataEnd)
            {
                await _file.TruncateAsync(dataEnd).ConfigureAwait(false);
            }
        }
    }

    /// <summary>How far the file grows at a time when a new block needs room (a multiple of the block size).</summary>
    private const long FileGrowthStep = 16L * VdiFormat.BlockSize;

    /// <summary>Whether this node grew the file beyond its data, so that close cuts the unused rest off again.</summary>
    private bool _grown;

    /// <summary>The file's length at open: from there on the file holds only what this node wrote (zeroes elsewhere).</summary>
    private readonly long _zeroFrom;

    /// <summary>
    /// Writes the header and the map entries allocated since the last time, once their data is on
    /// disk: one request when they share the first page (a kill cannot tear it), else header first.
    /// </summary>
    private async ValueTask WriteMetadataLockedAsync()
    {
        if (_lastDirty < _firstDirty)
        {
            return;
        }

        await _file.FlushAsync().ConfigureAwait(false);
        BinaryPrimitives.WriteUInt32LittleEndian(_headerBytes.AsSpan(VdiHeader.OffBlocksAllocated), _header.BlocksAllocated);
        var first = _firstDirty;
        var count = _lastDirty - _firstDirty + 1;
        var entriesEnd = _header.BlockMapOffset + ((long)(first + count) * 4);
        if (_header.BlockMapOffset == VdiFormat.HeaderSize && entriesEnd <= CombinedWriteLimit)
        {
            var page = new byte[entriesEnd];
            _headerBytes.CopyTo(page, 0);
            _map.Encode(0, first + count, page.AsSpan(VdiFormat.HeaderSize));
            await _file.WriteAsync(0, page).ConfigureAwait(false);
        }
        else
        {
            await _file.WriteAsync(0, _headerBytes).ConfigureAwait(false);
            var entries = new byte[count * 4];
            _map.Encode(first, count, entries);
            await _file.WriteAsync(_header.BlockMapOffset + ((long)first * 4), entries).ConfigureAwait(false);
        }

        _firstDirty = int.MaxValue;
        _lastDirty = -1;
    }
}
