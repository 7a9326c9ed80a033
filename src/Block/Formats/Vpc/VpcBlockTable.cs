using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// The block allocation table: one big-endian sector number per block, the block's sector bitmap
/// first and its data after it, or all ones for a block without storage. Kept in memory whole
/// (its size is bounded by the file, which holds it).
/// </summary>
internal sealed class VpcBlockTable
{
    private readonly uint[] _entries;

    private VpcBlockTable(uint[] entries, long offset)
    {
        _entries = entries;
        Offset = offset;
    }

    public long Offset { get; }

    public int Count => _entries.Length;

    public long ByteLength => (long)_entries.Length * 4;

    public uint this[int index] => Volatile.Read(ref _entries[index]);

    /// <summary>Decodes <paramref name="bytes"/> (the table as stored at <paramref name="offset"/>).</summary>
    public static VpcBlockTable Read(ReadOnlySpan<byte> bytes, long offset)
    {
        var entries = new uint[bytes.Length / 4];
        for (var i = 0; i < entries.Length; i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt32BigEndian(bytes[(i * 4)..]);
        }

        return new VpcBlockTable(entries, offset);
    }

    /// <summary>
    /// Checks every allocated block against the file: none may overlap <paramref name="metadata"/>
    /// (byte ranges of footer copy, dynamic header and this table), and the end of the last one is
    /// returned (where the next block goes); one reaching past <paramref name="fileLength"/> is refused
    /// with QEMU's words.
    /// </summary>
    public long Validate(int bitmapSize, long blockSize, long fileLength, IReadOnlyList<(long Start, long Length, string Name)> metadata)
    {
        var end = (Offset + ByteLength + VpcFormat.SectorSize - 1) & ~(long)(VpcFormat.SectorSize - 1);
        for (var i = 0; i < _entries.Length; i++)
        {
            if (_entries[i] == VpcFormat.Unallocated)
            {
                continue;
            }

            var start = (long)_entries[i] * VpcFormat.SectorSize;
            var blockEnd = start + bitmapSize + blockSize;
            foreach (var (mStart, mLength, name) in metadata)
            {
                if (start < mStart + mLength && mStart < blockEnd)
                {
                    throw BlockException.Invalid($"vpc: BAT entry {i} (block at offset 0x{start:x}) overlaps the {name}");
                }
            }

            end = Math.Max(end, blockEnd);
        }

        if (end > fileLength)
        {
            throw BlockException.Invalid("block-vpc: free_data_block_offset points after the end of file. The image has been truncated.");
        }

        return end;
    }

    /// <summary>Sets an entry in memory; <see cref="Encode"/> gives the bytes to store.</summary>
    public void Set(int index, uint sector) => Volatile.Write(ref _entries[index], sector);

    /// <summary>The stored form of entry <paramref name="index"/> and where it goes in the file.</summary>
    public long Encode(int index, Span<byte> entry)
    {
        BinaryPrimitives.WriteUInt32BigEndian(entry, this[index]);
        return Offset + ((long)index * 4);
    }
}
