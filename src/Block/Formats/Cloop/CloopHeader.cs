using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Cloop;

/// <summary>
/// A cloop (compressed loop) image's header: a shell-script preamble of 128 bytes, the block size
/// and block count (big-endian), then n+1 big-endian offsets: block i is the zlib stream between
/// offsets i and i+1. <see cref="Read"/> refuses what QEMU's cloop_open refuses, in its words.
/// </summary>
internal sealed record CloopHeader
{
    public const int OffBlockSize = 128;
    public const int OffBlockCount = 132;
    public const int OffOffsets = 136;

    /// <summary>QEMU's limit on the block size (the buffer one block needs).</summary>
    public const uint MaxBlockSize = 64 * 1024 * 1024;

    /// <summary>QEMU's limit on the offsets table.</summary>
    public const long MaxOffsetsBytes = 512L * 1024 * 1024;

    /// <summary>The preamble of a version 2.0 image, the probe's magic.</summary>
    public static ReadOnlySpan<byte> Magic => "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"u8;

    public uint BlockSize { get; init; }

    public uint BlockCount { get; init; }

    /// <summary>The bytes the offsets table takes (n+1 entries).</summary>
    public long OffsetsBytes => ((long)BlockCount + 1) * 8;

    /// <summary>The block size and count, checked as QEMU checks them, from the first 136 bytes.</summary>
    public static CloopHeader Read(ReadOnlySpan<byte> h)
    {
        var blockSize = BinaryPrimitives.ReadUInt32BigEndian(h[OffBlockSize..]);
        if (blockSize % 512 != 0)
        {
            throw BlockException.Invalid($"block_size {blockSize} must be a multiple of 512");
        }

        if (blockSize == 0)
        {
            throw BlockException.Invalid("block_size cannot be zero");
        }

        if (blockSize > MaxBlockSize)
        {
            throw BlockException.Invalid($"block_size {blockSize} must be {MaxBlockSize / (1024 * 1024)} MB or less");
        }

        var count = BinaryPrimitives.ReadUInt32BigEndian(h[OffBlockCount..]);
        if (count > (uint.MaxValue - 1) / 8)
        {
            throw BlockException.Invalid($"n_blocks {count} must be {(uint.MaxValue - 1) / 8} or less");
        }

        var header = new CloopHeader { BlockSize = blockSize, BlockCount = count };
        if (header.OffsetsBytes > MaxOffsetsBytes)
        {
            throw BlockException.Invalid("image requires too many offsets, try increasing block size");
        }

        return header;
    }

    /// <summary>The offsets table: increasing, no compressed block beyond twice the largest block size.</summary>
    public long[] ReadOffsets(ReadOnlySpan<byte> raw)
    {
        var offsets = new long[BlockCount + 1];
        for (var i = 0; i < offsets.Length; i++)
        {
            var value = BinaryPrimitives.ReadUInt64BigEndian(raw[(i * 8)..]);
            if (value > long.MaxValue)
            {
                throw BlockException.Invalid($"offset at index {i} is beyond any file, image file is corrupt");
            }

            offsets[i] = (long)value;
            if (i == 0)
            {
                continue;
            }

            if (offsets[i] < offsets[i - 1])
            {
                throw BlockException.Invalid($"offsets not monotonically increasing at index {i}, image file is corrupt");
            }

            if (offsets[i] - offsets[i - 1] > 2L * MaxBlockSize)
            {
                throw BlockException.Invalid($"invalid compressed block size at index {i}, image file is corrupt");
            }
        }

        return offsets;
    }
}
