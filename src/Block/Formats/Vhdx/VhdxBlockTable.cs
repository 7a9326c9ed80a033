using System.Buffers.Binary;
using System.Numerics;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The block allocation table: a 64-bit entry per payload block (state in the low 3 bits, file
/// offset in MiB in the upper 44), with a sector bitmap entry after every chunk of payload entries.
/// Kept in memory whole (its length is bounded by the region, which lies in the file). Only a
/// differencing image uses the bitmap entries (SB_BLOCK_PRESENT: 1 MiB of sector bitmap in the
/// file) and the payload state PARTIALLY_PRESENT.
/// </summary>
internal sealed class VhdxBlockTable
{
    public const ulong StateMask = 7;
    public const ulong OffsetMask = 0xFFFFFFFFFFF00000;
    public const ulong NotPresent = 0;
    public const ulong Undefined = 1;
    public const ulong Zero = 2;
    public const ulong Unmapped = 3;
    public const ulong UnmappedV095 = 5;
    public const ulong FullyPresent = 6;
    public const ulong PartiallyPresent = 7;

    /// <summary>A sector bitmap entry's state when its block is in the file (SB_BLOCK_PRESENT).</summary>
    public const ulong BitmapPresent = 6;

    /// <summary>A sector bitmap block: 1 MiB, one bit per logical sector of its chunk.</summary>
    public const int BitmapBlockSize = VhdxFormat.MiB;

    private readonly ulong[] _entries;
    private readonly int _chunkRatioBits;
    private readonly bool _differencing;

    private VhdxBlockTable(ulong[] entries, int chunkRatioBits, long offset, long blocks, bool differencing)
    {
        _entries = entries;
        _chunkRatioBits = chunkRatioBits;
        _differencing = differencing;
        Offset = offset;
        PayloadBlocks = blocks;
    }

    public long Offset { get; }

    public long PayloadBlocks { get; }

    /// <summary>Payload blocks per sector bitmap block: 2^23 sectors' worth of bitmap.</summary>
    public static long ChunkRatio(uint blockSize, uint logicalSectorSize) => VhdxFormat.MaxSectorsPerBlock * logicalSectorSize / blockSize;

    /// <summary>
    /// How many entries an image of this geometry has: payload entries with the bitmap entries between
    /// them; a differencing image also has the bitmap entry after its last chunk.
    /// </summary>
    public static long EntryCount(ulong virtualSize, uint blockSize, uint logicalSectorSize, bool differencing = false)
    {
        var blocks = (long)((virtualSize + blockSize - 1) / blockSize);
        var ratio = ChunkRatio(blockSize, logicalSectorSize);
        return blocks == 0 ? 0
            : differencing ? (blocks + ratio - 1) / ratio * (ratio + 1)
            : blocks + ((blocks - 1) >> BitOperations.Log2((ulong)ratio));
    }

    public int IndexOf(long block) => (int)(block + (block >> _chunkRatioBits));

    /// <summary>The index of the bitmap entry of chunk <paramref name="chunk"/> (it follows the chunk's payload entries).</summary>
    public int BitmapIndexOf(long chunk) => (int)((chunk << _chunkRatioBits) + (1L << _chunkRatioBits) + chunk);

    /// <summary>The chunk (group of payload blocks sharing a sector bitmap block) of <paramref name="block"/>.</summary>
    public long ChunkOf(long block) => block >> _chunkRatioBits;

    public ulong this[long block] => Volatile.Read(ref _entries[IndexOf(block)]);

    /// <summary>The sector bitmap entry of chunk <paramref name="chunk"/>.</summary>
    public ulong Bitmap(long chunk) => Volatile.Read(ref _entries[BitmapIndexOf(chunk)]);

    public static VhdxBlockTable Read(ReadOnlySpan<byte> bytes, long offset, VhdxMetadata m)
    {
        var count = EntryCount(m.VirtualSize, m.BlockSize, m.LogicalSectorSize, m.HasParentImage);
        if (count * 8 > bytes.Length)
        {
            throw BlockException.Invalid($"vhdx: BAT region of {bytes.Length} bytes is too small for {count} entries");
        }

        var entries = new ulong[count];
        for (var i = 0; i < count; i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(i * 8)..]);
        }

        var blocks = (long)((m.VirtualSize + m.BlockSize - 1) / m.BlockSize);
        return new VhdxBlockTable(entries, BitOperations.Log2((ulong)ChunkRatio(m.BlockSize, m.LogicalSectorSize)), offset, blocks, m.HasParentImage);
    }

    /// <summary>
    /// Checks every payload entry: a known state, and for one with storage a block inside the file
    /// past its header section that overlaps none of <paramref name="regions"/>. In a differencing
    /// image, a chunk with a PARTIALLY_PRESENT block needs its sector bitmap block, checked alike.
    /// Returns the end of the last block.
    /// </summary>
    public long Validate(uint blockSize, long fileLength, IReadOnlyList<(long Start, long Length, string Name)> regions)
    {
        long end = 0;
        for (long b = 0; b < PayloadBlocks; b++)
        {
            var index = IndexOf(b);
            var e = _entries[index];
            var state = e & StateMask;
            if (state == 4 || (state == PartiallyPresent && !_differencing))
            {
                throw BlockException.Invalid($"vhdx: BAT entry {index} has state {state}, which a payload block of an image without a parent cannot have");
            }

            if (state == PartiallyPresent && (Bitmap(ChunkOf(b)) & StateMask) != BitmapPresent)
            {
                throw BlockException.Invalid($"vhdx: BAT entry {index} is partially present but the sector bitmap entry {BitmapIndexOf(ChunkOf(b))} of its chunk is not present");
            }

            if (state is FullyPresent or PartiallyPresent)
            {
                end = Math.Max(end, CheckStorage(index, e, blockSize, fileLength, regions));
            }
        }

        for (long c = 0; _differencing && c < (PayloadBlocks + (1L << _chunkRatioBits) - 1) >> _chunkRatioBits; c++)
        {
            var index = BitmapIndexOf(c);
            var state = _entries[index] & StateMask;
            if (state == BitmapPresent)
            {
                end = Math.Max(end, CheckStorage(index, _entries[index], BitmapBlockSize, fileLength, regions));
            }
            else if (state != NotPresent)
            {
                throw BlockException.Invalid($"vhdx: BAT entry {index} (a sector bitmap entry) has state {state}");
            }
        }

        return end;
    }

    /// <summary>The block an entry with storage points at lies inside the file and outside <paramref name="regions"/>; returns its end.</summary>
    private static long CheckStorage(int index, ulong e, long length, long fileLength, IReadOnlyList<(long Start, long Length, string Name)> regions)
    {
        var start = (long)(e & OffsetMask);
        if (start > long.MaxValue - length)
        {
            throw BlockException.Invalid($"VHDX BAT entry {index} offset overflow.");
        }

        if (start >= fileLength)
        {
            throw BlockException.Invalid($"VHDX BAT entry {index} start offset {start} points after end of file ({fileLength}). Image has probably been truncated.");
        }

        if (start + length > fileLength)
        {
            throw BlockException.Invalid($"VHDX BAT entry {index} end offset {start + length} points after end of file ({fileLength}). Image has probably been truncated.");
        }

        foreach (var (rStart, rLength, name) in regions)
        {
            if (start < rStart + rLength && rStart < start + length)
            {
                throw BlockException.Invalid($"vhdx: BAT entry {index} (block at offset 0x{start:x}) overlaps the {name}");
            }
        }

        return start + length;
    }

    /// <summary>Sets the entry of payload block <paramref name="block"/> in memory.</summary>
    public void Set(long block, ulong entry) => Volatile.Write(ref _entries[IndexOf(block)], entry);

    /// <summary>Sets the sector bitmap entry of chunk <paramref name="chunk"/> in memory.</summary>
    public void SetBitmap(long chunk, ulong entry) => Volatile.Write(ref _entries[BitmapIndexOf(chunk)], entry);

    /// <summary>The 4 KiB sector of the table holding entry <paramref name="index"/>, as stored, and its file offset.</summary>
    public long EncodeSector(int index, Span<byte> sector)
    {
        const int perSector = VhdxFormat.LogSectorSize / 8;
        var first = index / perSector * perSector;
        sector[..VhdxFormat.LogSectorSize].Clear();
        for (var i = first; i < Math.Min(first + perSector, _entries.Length); i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(sector[((i - first) * 8)..], Volatile.Read(ref _entries[i]));
        }

        return Offset + ((long)first * 8);
    }
}
