namespace ExportServer.Block.Core;

/// <summary>
/// Reads, zero writes and block status of images that map fixed-size guest blocks to offsets in their file
/// (vpc, vdi, vhdx): a block either has a host offset or reads as zeroes.
/// </summary>
public static class BlockMapping
{
    /// <summary>The length of the part of [offset, offset+length) inside the block of <paramref name="offset"/>.</summary>
    public static int ChunkAt(long offset, long length, long blockSize) => (int)Math.Min(length, blockSize - (offset % blockSize));

    /// <summary>
    /// Reads guest bytes block by block from <paramref name="file"/>; <paramref name="hostOffset"/>
    /// gives the file offset of a guest offset, or -1 where the block reads as zeroes.
    /// </summary>
    public static async ValueTask ReadAsync(BlockNode file, long offset, Memory<byte> buffer, long blockSize, Func<long, long> hostOffset)
    {
        while (buffer.Length > 0)
        {
            var n = ChunkAt(offset, buffer.Length, blockSize);
            var host = hostOffset(offset);
            if (host < 0)
            {
                buffer.Span[..n].Clear();
            }
            else
            {
                await file.ReadAsync(host, buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>
    /// Data for the rest of a mapped block; zeroes for a run of unmapped blocks. Both are this
    /// layer's answer (QEMU reports zeroes of a format without backing as allocated).
    /// </summary>
    public static BlockStatus Status(long offset, long length, long blockSize, Func<long, long> hostOffset)
    {
        var n = (long)ChunkAt(offset, length, blockSize);
        if (hostOffset(offset) >= 0)
        {
            return new BlockStatus(n, BlockStatusFlags.Data | BlockStatusFlags.Allocated);
        }

        while (n < length && hostOffset(offset + n) < 0)
        {
            n += ChunkAt(offset + n, length - n, blockSize);
        }

        return new BlockStatus(n, BlockStatusFlags.Zero | BlockStatusFlags.Allocated);
    }

    /// <summary>
    /// Zeroes guest bytes without allocating: a block without storage already reads as zeroes and
    /// is left alone; <paramref name="zeroMapped"/> zeroes each part (guest offset, length) that lies
    /// in a block with storage.
    /// </summary>
    public static async ValueTask WriteZeroesAsync(long offset, long length, long blockSize, Func<long, long> hostOffset, Func<long, int, ValueTask> zeroMapped)
    {
        var end = offset + length;
        while (offset < end)
        {
            var n = ChunkAt(offset, end - offset, blockSize);
            if (hostOffset(offset) >= 0)
            {
                await zeroMapped(offset, n).ConfigureAwait(false);
            }

            offset += n;
        }
    }

    /// <summary>What a layer shows where it has nothing of its own: <paramref name="backing"/>'s data, zeroes past its end or without one.</summary>
    public static async ValueTask ReadBackingAsync(BlockNode? backing, long offset, Memory<byte> buffer)
    {
        var n = backing is null ? 0 : (int)Math.Clamp(backing.Length - offset, 0, buffer.Length);
        if (n > 0)
        {
            await backing!.ReadAsync(offset, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
    }
}
