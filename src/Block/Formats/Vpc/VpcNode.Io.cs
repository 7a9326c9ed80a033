using System.Buffers;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>Reads, writes (with block allocation), zero writes and block status.</summary>
internal sealed partial class VpcNode
{
    /// <summary>The host offset of guest byte <paramref name="offset"/>, or -1 for an unallocated block.</summary>
    private long HostOffset(long offset)
    {
        var entry = _table![(int)(offset / _blockSize)];
        return entry == VpcFormat.Unallocated ? -1 : ((long)entry * VpcFormat.SectorSize) + _bitmapSize + (offset % _blockSize);
    }

    private int ChunkAt(long offset, long length) => BlockMapping.ChunkAt(offset, length, _blockSize);

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        IsFixed ? _file.ReadAsync(offset, buffer) : BlockMapping.ReadAsync(_file, offset, buffer, _blockSize, HostOffset);

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        if (IsFixed)
        {
            await _file.WriteAsync(offset, buffer).ConfigureAwait(false);
            return;
        }

        while (buffer.Length > 0)
        {
            var n = ChunkAt(offset, buffer.Length);
            var block = (int)(offset / _blockSize);
            var host = HostOffset(offset);
            if (host < 0)
            {
                await AllocateAsync(block, offset % _blockSize, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                if (!_bitmapFull![block])
                {
                    await FillBitmapAsync(block).ConfigureAwait(false);
                }

                await _file.WriteAsync(host, buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>
    /// Zeroes: a fixed disk asks its file; in a dynamic disk an unallocated block already reads as
    /// zeroes and an allocated one has its file zero the range (QEMU allocates instead; this reads the same).
    /// </summary>
    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        if (IsFixed)
        {
            await _file.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
            return;
        }

        if ((flags & ZeroFlags.NoFallback) != 0)
        {
            // Nothing is zeroed before this refusal: blocks without storage are left alone.
            await BlockMapping.WriteZeroesAsync(offset, length, _blockSize, HostOffset,
                (_, _) => throw BlockException.NotSupported("vpc: zeroing an allocated block writes data")).ConfigureAwait(false);
            return;
        }

        await BlockMapping.WriteZeroesAsync(offset, length, _blockSize, HostOffset, async (o, n) =>
        {
            var block = (int)(o / _blockSize);
            if (!_bitmapFull![block])
            {
                await FillBitmapAsync(block).ConfigureAwait(false);
            }

            await _file.WriteZeroesAsync(HostOffset(o), n, flags).ConfigureAwait(false);
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// A fixed disk reports its file's status; a dynamic one says data for an allocated block and
    /// zeroes for a run of unallocated ones (both decided here, as QEMU's vpc_co_block_status).
    /// </summary>
    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        IsFixed ? _file.GetBlockStatusAsync(offset, length) : ValueTask.FromResult(BlockMapping.Status(offset, length, _blockSize, HostOffset));

    /// <summary>
    /// Gives <paramref name="block"/> storage at the end of the file and writes <paramref name="data"/>
    /// at <paramref name="inBlock"/> in it, in the order the class comment gives. Another writer may
    /// have allocated the block meanwhile; the data then goes in place.
    /// </summary>
    private async ValueTask AllocateAsync(int block, long inBlock, ReadOnlyMemory<byte> data)
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_table![block] != VpcFormat.Unallocated)
            {
                await _file.WriteAsync(HostOffset(((long)block * _blockSize) + inBlock), data).ConfigureAwait(false);
                return;
            }

            var start = _nextBlock;
            var footerAt = start + _bitmapSize + _blockSize;
            if (start / VpcFormat.SectorSize >= VpcFormat.Unallocated)
            {
                throw new BlockException(Errno.ENOSPC, "vpc: the image file is full (a block cannot start beyond 2 TiB)");
            }

            if (_file.Length > start + VpcFormat.FooterSize)
            {
                // Something other than the footer follows the last block (an allocation cut short):
                // nothing points there, and the new block must read as zeroes where it is not written.
                await _file.TruncateAsync(start).ConfigureAwait(false);
            }

            await _file.TruncateAsync(footerAt + VpcFormat.FooterSize).ConfigureAwait(false);
            await _file.WriteAsync(footerAt, _footerBytes).ConfigureAwait(false);
            var bitmap = ArrayPool<byte>.Shared.Rent(_bitmapSize);
            try
            {
                bitmap.AsSpan(0, _bitmapSize).Fill(0xff);
                await _file.WriteAsync(start, bitmap.AsMemory(0, _bitmapSize)).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(bitmap);
            }

            await _file.WriteAsync(start + _bitmapSize + inBlock, data).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);

            _table.Set(block, (uint)(start / VpcFormat.SectorSize));
            var entry = new byte[4];
            await _file.WriteAsync(_table.Encode(block, entry), entry).ConfigureAwait(false);
            _nextBlock = footerAt;
            _bitmapFull![block] = true;
        }
        finally
        {
            _allocation.Release();
        }
    }

    /// <summary>Makes the bitmap of an allocated block (perhaps written by another program) all ones before the first write to it.</summary>
    private async ValueTask FillBitmapAsync(int block)
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_bitmapFull![block])
            {
                return;
            }

            var at = (long)_table![block] * VpcFormat.SectorSize;
            var bitmap = new byte[_bitmapSize];
            await _file.ReadAsync(at, bitmap).ConfigureAwait(false);
            if (bitmap.AsSpan().ContainsAnyExcept((byte)0xff))
            {
                bitmap.AsSpan().Fill(0xff);
                await _file.WriteAsync(at, bitmap).ConfigureAwait(false);
            }

            _bitmapFull[block] = true;
        }
        finally
        {
            _allocation.Release();
        }
    }
}
