using System.Buffers.Binary;
using System.Numerics;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The block allocation table: a 64-bit entry per payload block (state in the low 3 bits, file
/// offset in MiB in the upper 44), with a sector bitmap entry after every chunk of payload entries.
/// Kept in memory whole (its length is bounded by the region, which lies in the file).
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

    private readonly ulong[] _entries;
    private readonly int _chunkRatioBits;

    private VhdxBlockTable(ulong[] entries, int chunkRatioBits, long offset, long blocks)
    {
        _entries = entries;
        _chunkRatioBits = chunkRatioBits;
        Offset = offset;
        PayloadBlocks = blocks;
    }

    public long Offset { get; }

    public long PayloadBlocks { get; }

    /// <summary>Payload blocks per sector bitmap block: 2^23 sectors' worth of bitmap.</summary>
    public static long ChunkRatio(uint blockSize, uint logicalSectorSize) => VhdxFormat.MaxSectorsPerBlock * logicalSectorSize / blockSize;

    /// <summary>How many entries a non-differencing image of this geometry has (payload entries with the bitmap entries between them).</summary>
    public static long EntryCount(ulong virtualSize, uint blockSize, uint logicalSectorSize)
    {
        var blocks = (long)((virtualSize + blockSize - 1) / blockSize);
        return blocks == 0 ? 0 : blocks + ((blocks - 1) >> BitOperations.Log2((ulong)ChunkRatio(blockSize, logicalSectorSize)));
    }

    public int IndexOf(long block) => (int)(block + (block >> _chunkRatioBits));

    public ulong this[long block] => Volatile.Read(ref _entries[IndexOf(block)]);

    public static VhdxBlockTable Read(ReadOnlySpan<byte> bytes, long offset, VhdxMetadata m)
    {
        var count = EntryCount(m.VirtualSize, m.BlockSize, m.LogicalSectorSize);
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
        return new VhdxBlockTable(entries, BitOperations.Log2((ulong)ChunkRatio(m.BlockSize, m.LogicalSectorSize)), offset, blocks);
    }

    /// <summary>
    /// Checks every payload entry: a known state, and for one with storage a block inside the file
    /// past its header section that overlaps none of <paramref name="regions"/>. Returns the end of the last block.
    /// </summary>
    public long Validate(uint blockSize, long fileLength, IReadOnlyList<(long Start, long Length, string Name)> regions)
    {
        long end = 0;
        for (long b = 0; b < PayloadBlocks; b++)
        {
            var index = IndexOf(b);
            var e = _entries[index];
            var state = e & StateMask;
            if (state is 4 or PartiallyPresent)
            {
                throw BlockException.Invalid($"vhdx: BAT entry {index} has state {state}, which a payload block of an image without a parent cannot have");
            }

            if (state != FullyPresent)
            {
                continue;
            }

            var start = (long)(e & OffsetMask);
            if (start > long.MaxValue - blockSize)
            {
                throw BlockException.Invalid($"VHDX BAT entry {index} offset overflow.");
            }

            if (start >= fileLength)
            {
                throw BlockException.Invalid($"VHDX BAT entry {index} start offset {start} points after end of file ({fileLength}). Image has probably been truncated.");
            }

            if (start + blockSize > fileLength)
            {
                throw BlockException.Invalid($"VHDX BAT entry {index} end offset {start + blockSize} points after end of file ({fileLength}). Image has probably been truncated.");
            }

            foreach (var (rStart, rLength, name) in regions)
            {
                if (start < rStart + rLength && rStart < start + blockSize)
                {
                    throw BlockException.Invalid($"vhdx: BAT entry {index} (block at offset 0x{start:x}) overlaps the {name}");
                }
            }

            end = Math.Max(end, start + blockSize);
        }

        return end;
    }

    /// <summary>Sets the entry of payload block <paramref name="block"/> in memory.</summary>
    public void Set(long block, ulong entry) => Volatile.Write(ref _entries[IndexOf(block)], entry);

    /// <summary>The 4 KiB sector of the table holding <paramref name="block"/>'s entry, as stored, and its file offset.</summary>
    public long EncodeSector(long block, Span<byte> sector)
    {
        const int perSector = VhdxFormat.LogSectorSize / 8;
        var first = IndexOf(block) / perSector * perSector;
        sector[..VhdxFormat.LogSectorSize].Clear();
        for (var i = first; i < Math.Min(first + perSector, _entries.Length); i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(sector[((i - first) * 8)..], Volatile.Read(ref _entries[i]));
        }

        return Offset + ((long)first * 8);
    }
}
