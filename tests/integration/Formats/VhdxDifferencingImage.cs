using System.Buffers.Binary;
using System.Text;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// Makes a differencing VHDX byte by byte from the specification (MS-VHDX), starting from a dynamic
/// image qemu-img made with 1 MiB blocks and 512-byte sectors: the has-parent flag in the file
/// parameters, a parent locator metadata item, and BAT entries, sector bitmap blocks and payload
/// blocks appended to the file. QEMU reads no differencing VHDX, so what such an image shows is
/// computed here too (<see cref="Expected"/>).
/// </summary>
internal sealed class VhdxDifferencingImage
{
    public const long BlockSize = 1 << 20;
    public const int SectorSize = 512;

    /// <summary>Payload blocks per chunk (one sector bitmap block of 2^23 bits covers 4 GiB of 512-byte sectors).</summary>
    public const long ChunkRatio = (1L << 23) * SectorSize / BlockSize;

    private const ulong FullyPresentState = 6;
    private const ulong PartiallyPresentState = 7;
    private const ulong BitmapPresent = 6;
    private static readonly Guid ParentLocatorItem = new("a8d35f2d-b30b-454d-abf7-d3d84834ab0c");
    private static readonly Guid FileParametersItem = new("caa16737-fa36-4d43-b3b6-33f0aa44e76b");
    private static readonly Guid VhdxParentLocatorType = new("b04aefb7-d19e-4a81-b789-25b8e9445913");
    private static readonly Guid BatRegion = new("2dc27766-f623-4200-9d64-115e9bfd4a08");
    private static readonly Guid MetadataRegion = new("8b7ca206-4790-4b9a-b8fe-575f050f886e");

    private readonly FileStream _file;
    private readonly long _bat;
    private readonly long _metadata;
    private readonly Dictionary<long, long> _bitmaps = [];

    private VhdxDifferencingImage(FileStream file)
    {
        _file = file;

        // Region table 1 at 192 KiB: a 16-byte header, then 32-byte entries (GUID, offset, length, flags).
        var table = Read(192 * 1024, 64 * 1024);
        var count = BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(8));
        for (var i = 0; i < count; i++)
        {
            var e = table.AsSpan(16 + (i * 32), 32);
            var id = new Guid(e[..16]);
            var offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[16..]);
            if (id == BatRegion)
            {
                _bat = offset;
            }
            else if (id == MetadataRegion)
            {
                _metadata = offset;
            }
        }
    }

    /// <summary>What each sector of the image shows: this file's bytes (present), zeroes, or the parent's.</summary>
    public enum Source
    {
        Parent,
        Zero,
        Child,
    }

    /// <summary>The data the image itself holds for guest offset o (a pattern that differs per sector and per block).</summary>
    public static byte ChildByte(long guestOffset) => (byte)(0x80 + (guestOffset / SectorSize % 61) + (guestOffset / BlockSize % 7));

    /// <summary>Guest sectors and what they show, set by the calls below, for <see cref="Expected"/>.</summary>
    public Dictionary<long, Source> Sectors { get; } = [];

    /// <summary>Opens <paramref name="path"/>, a dynamic vhdx from qemu-img with block_size=1M and block_state_zero=off.</summary>
    public static VhdxDifferencingImage Open(string path) => new(new FileStream(path, FileMode.Open, FileAccess.ReadWrite));

    /// <summary>The data write GUID of the current header (the valid one with the higher sequence number) of a vhdx.</summary>
    public static Guid DataWriteGuid(string path)
    {
        using var f = File.OpenRead(path);
        var best = (Sequence: 0UL, Guid: Guid.Empty);
        foreach (var at in new[] { 64 * 1024, 128 * 1024 })
        {
            var h = new byte[80];
            f.Position = at;
            f.ReadExactly(h);
            var sequence = BinaryPrimitives.ReadUInt64LittleEndian(h.AsSpan(8));
            if (BinaryPrimitives.ReadUInt32LittleEndian(h) == 0x64616568 && sequence >= best.Sequence)
            {
                best = (sequence, new Guid(h.AsSpan(32, 16)));
            }
        }

        return best.Guid;
    }

    /// <summary>
    /// The has-parent bit in the file parameters and a parent locator item (entries key/value in
    /// UTF-16, offsets from the item's start) appended to the metadata table.
    /// </summary>
    public void MakeDifferencing(IReadOnlyList<(string Key, string Value)> locator)
    {
        var table = Read(_metadata, 64 * 1024);
        var count = BinaryPrimitives.ReadUInt16LittleEndian(table.AsSpan(10));
        long itemsEnd = 64 * 1024;
        for (var i = 0; i < count; i++)
        {
            var e = table.AsSpan(32 + (i * 32), 32);
            var offset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]);
            var length = BinaryPrimitives.ReadUInt32LittleEndian(e[20..]);
            itemsEnd = Math.Max(itemsEnd, offset + length);
            if (new Guid(e[..16]) == FileParametersItem)
            {
                var flags = Read(_metadata + offset + 4, 4);
                flags[0] |= 2; // HasParent
                Write(_metadata + offset + 4, flags);
            }
        }

        var item = new MemoryStream();
        var header = new byte[20];
        VhdxParentLocatorType.TryWriteBytes(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(18), (ushort)locator.Count);
        item.Write(header);
        var strings = new MemoryStream();
        var stringsAt = 20 + (12 * locator.Count);
        foreach (var (key, value) in locator)
        {
            var k = Encoding.Unicode.GetBytes(key);
            var v = Encoding.Unicode.GetBytes(value);
            var entry = new byte[12];
            BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)(stringsAt + strings.Length));
            strings.Write(k);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(4), (uint)(stringsAt + strings.Length));
            strings.Write(v);
            BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(8), (ushort)k.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(entry.AsSpan(10), (ushort)v.Length);
            item.Write(entry);
        }

        item.Write(strings.ToArray());
        var itemOffset = (itemsEnd + 7) / 8 * 8;
        Write(_metadata + itemOffset, item.ToArray());

        var newEntry = new byte[32];
        ParentLocatorItem.TryWriteBytes(newEntry);
        BinaryPrimitives.WriteUInt32LittleEndian(newEntry.AsSpan(16), (uint)itemOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(newEntry.AsSpan(20), (uint)item.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(newEntry.AsSpan(24), 4 | 2); // IsRequired, IsVirtualDisk
        Write(_metadata + 32 + (count * 32), newEntry);
        var newCount = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(newCount, (ushort)(count + 1));
        Write(_metadata + 10, newCount);
    }

    /// <summary>A payload block whose every sector comes from this file.</summary>
    public void FullyPresent(long block)
    {
        var at = AppendBlock(block);
        SetEntry(block + (block / ChunkRatio), (ulong)at | FullyPresentState);
        Mark(block, 0, BlockSize / SectorSize, Source.Child);
    }

    /// <summary>A payload block in a state without storage that reads as zeroes (ZERO 2, UNMAPPED 3, UNDEFINED 1).</summary>
    public void NoStorage(long block, ulong state)
    {
        SetEntry(block + (block / ChunkRatio), state);
        Mark(block, 0, BlockSize / SectorSize, Source.Zero);
    }

    /// <summary>A PARTIALLY_PRESENT block whose sectors in <paramref name="runs"/> (first, count) come from this file, the rest from the parent.</summary>
    public void PartiallyPresent(long block, IEnumerable<(long First, long Count)> runs)
    {
        var chunk = block / ChunkRatio;
        if (!_bitmaps.TryGetValue(chunk, out var bitmap))
        {
            bitmap = Append(new byte[1 << 20]);
            _bitmaps[chunk] = bitmap;
            SetEntry((chunk * (ChunkRatio + 1)) + ChunkRatio, (ulong)bitmap | BitmapPresent);
        }

        var at = AppendBlock(block);
        SetEntry(block + chunk, (ulong)at | PartiallyPresentState);
        Mark(block, 0, BlockSize / SectorSize, Source.Parent);
        foreach (var (first, count) in runs)
        {
            for (var s = first; s < first + count; s++)
            {
                var bit = ((block % ChunkRatio) * (BlockSize / SectorSize)) + s;
                var b = Read(bitmap + (bit / 8), 1);
                b[0] |= (byte)(1 << (int)(bit % 8));
                Write(bitmap + (bit / 8), b);
            }

            Mark(block, first, count, Source.Child);
        }
    }

    /// <summary>Writes into <paramref name="raw"/> (the parent's content as a raw file) what this image shows over it.</summary>
    public void Expected(string raw)
    {
        using var f = new FileStream(raw, FileMode.Open, FileAccess.ReadWrite);
        var sector = new byte[SectorSize];
        foreach (var (s, source) in Sectors)
        {
            if (source == Source.Parent)
            {
                continue;
            }

            for (var i = 0; i < SectorSize; i++)
            {
                sector[i] = source == Source.Zero ? (byte)0 : ChildByte((s * SectorSize) + i);
            }

            f.Position = s * SectorSize;
            f.Write(sector);
        }
    }

    public void Close() => _file.Dispose();

    private void Mark(long block, long first, long count, Source source)
    {
        for (var s = first; s < first + count; s++)
        {
            Sectors[(block * (BlockSize / SectorSize)) + s] = source;
        }
    }

    /// <summary>A block of this image's pattern for <paramref name="block"/>, appended; returns its file offset.</summary>
    private long AppendBlock(long block)
    {
        var data = new byte[BlockSize];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = ChildByte((block * BlockSize) + i);
        }

        return Append(data);
    }

    /// <summary>Appends at the next MiB of the file (where VHDX blocks go); returns the offset.</summary>
    private long Append(byte[] data)
    {
        var at = (_file.Length + (1 << 20) - 1) / (1 << 20) * (1 << 20);
        Write(at, data);
        return at;
    }

    private void SetEntry(long index, ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        Write(_bat + (index * 8), bytes);
    }

    private byte[] Read(long at, int length)
    {
        var bytes = new byte[length];
        _file.Position = at;
        _file.ReadExactly(bytes);
        return bytes;
    }

    private void Write(long at, byte[] bytes)
    {
        _file.Position = at;
        _file.Write(bytes);
    }
}
