using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The metadata region: a table (the first 64 KiB) of items, of which this driver needs file
/// parameters (block size, fixed, has parent), virtual disk size, logical and physical sector size,
/// page 83 data and, for a differencing image, the parent locator.
/// </summary>
internal sealed record VhdxMetadata
{
    public const int TableSize = 64 * VhdxFormat.KiB;
    private const int TableHeaderSize = 32;
    private const int EntrySize = 32;
    private const uint RequiredBit = 4;
    private const uint LeaveBlocksAllocated = 1;
    private const uint HasParent = 2;

    private static readonly Guid[] s_required =
    [
        VhdxFormat.FileParameters, VhdxFormat.VirtualDiskSize, VhdxFormat.Page83Data, VhdxFormat.LogicalSectorSize, VhdxFormat.PhysicalSectorSize,
    ];

    public required uint BlockSize { get; init; }

    public bool IsFixed { get; init; }

    public bool HasParentImage { get; init; }

    public required ulong VirtualSize { get; init; }

    public required uint LogicalSectorSize { get; init; }

    public uint PhysicalSectorSize { get; init; }

    public Guid Page83 { get; init; }

    /// <summary>The parent locator's entries (key → value), for a differencing image.</summary>
    public IReadOnlyDictionary<string, string> ParentLocator { get; init; } = new Dictionary<string, string>();

    /// <summary>Reads the table and the items from <paramref name="region"/>, the whole metadata region.</summary>
    public static VhdxMetadata Read(ReadOnlySpan<byte> region)
    {
        if (region.Length < TableSize || BinaryPrimitives.ReadUInt64LittleEndian(region) != VhdxFormat.MetadataSignature)
        {
            throw BlockException.Invalid("vhdx: metadata table signature is not 'metadata'");
        }

        var count = BinaryPrimitives.ReadUInt16LittleEndian(region[10..]);
        if (count > VhdxFormat.MaxTableEntries)
        {
            throw BlockException.Invalid($"vhdx: metadata table entry count {count} is above the maximum of {VhdxFormat.MaxTableEntries}");
        }

        var items = new Dictionary<Guid, byte[]>();
        for (var i = 0; i < count; i++)
        {
            var e = region.Slice(TableHeaderSize + (i * EntrySize), EntrySize);
            var id = new Guid(e[..16]);
            var offset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]);
            var length = BinaryPrimitives.ReadUInt32LittleEndian(e[20..]);
            var bits = BinaryPrimitives.ReadUInt32LittleEndian(e[24..]);
            var known = Array.IndexOf(s_required, id) >= 0 || id == VhdxFormat.ParentLocator;
            if (!known)
            {
                if ((bits & RequiredBit) != 0)
                {
                    throw BlockException.NotSupported($"vhdx: metadata item {id} is required and not known to this driver");
                }

                continue;
            }

            if (items.ContainsKey(id))
            {
                throw BlockException.Invalid($"vhdx: metadata item {id} is listed twice");
            }

            if (length > VhdxFormat.MiB || (length > 0 && offset < TableSize) || (long)offset + length > region.Length)
            {
                throw BlockException.Invalid($"vhdx: metadata item {id} (offset 0x{offset:x}, length {length}) is not inside the metadata region");
            }

            items[id] = region.Slice((int)offset, (int)length).ToArray();
        }

        foreach (var id in s_required)
        {
            if (!items.ContainsKey(id))
            {
                throw BlockException.NotSupported($"vhdx: required metadata item {id} is missing");
            }
        }

        byte[] Item(Guid id, int length, string name) =>
            items[id].Length >= length ? items[id] : throw BlockException.Invalid($"vhdx: metadata item '{name}' is {items[id].Length} bytes, shorter than {length}");

        var parameters = Item(VhdxFormat.FileParameters, 8, "file parameters");
        var blockSize = BinaryPrimitives.ReadUInt32LittleEndian(parameters);
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(parameters.AsSpan(4));
        var logical = BinaryPrimitives.ReadUInt32LittleEndian(Item(VhdxFormat.LogicalSectorSize, 4, "logical sector size"));
        var size = BinaryPrimitives.ReadUInt64LittleEndian(Item(VhdxFormat.VirtualDiskSize, 8, "virtual disk size"));
        if (blockSize is < VhdxFormat.MinBlockSize or > VhdxFormat.MaxBlockSize || !BitOperations.IsPow2(blockSize))
        {
            throw BlockException.Invalid($"vhdx: block size {blockSize} (file parameters) is not a power of two from 1 MiB to 256 MiB");
        }

        if (logical is not (512 or 4096))
        {
            throw BlockException.Invalid($"vhdx: logical sector size {logical} is neither 512 nor 4096");
        }

        if (size > VhdxFormat.MaxImageSize || size % logical != 0)
        {
            throw BlockException.Invalid($"vhdx: virtual disk size {size} is not a multiple of the logical sector size up to 64 TiB");
        }

        return new VhdxMetadata
        {
            BlockSize = blockSize,
            IsFixed = (flags & LeaveBlocksAllocated) != 0,
            HasParentImage = (flags & HasParent) != 0,
            VirtualSize = size,
            LogicalSectorSize = logical,
            PhysicalSectorSize = BinaryPrimitives.ReadUInt32LittleEndian(Item(VhdxFormat.PhysicalSectorSize, 4, "physical sector size")),
            Page83 = new Guid(Item(VhdxFormat.Page83Data, 16, "page 83 data").AsSpan(0, 16)),
            ParentLocator = items.TryGetValue(VhdxFormat.ParentLocator, out var locator) ? ReadLocator(locator) : new Dictionary<string, string>(),
        };
    }

    /// <summary>The parent locator: a type GUID, then key/value entries pointing at UTF-16 strings inside the item.</summary>
    private static Dictionary<string, string> ReadLocator(byte[] item)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (item.Length < 20)
        {
            throw BlockException.Invalid("vhdx: parent locator is shorter than its header");
        }

        if (new Guid(item.AsSpan(0, 16)) is var type && type != VhdxFormat.VhdxParentLocatorType)
        {
            throw BlockException.NotSupported($"vhdx: parent locator type {type} is not the VHDX parent locator");
        }

        var count = BinaryPrimitives.ReadUInt16LittleEndian(item.AsSpan(18));
        for (var i = 0; i < count; i++)
        {
            var at = 20 + (i * 12);
            if (at + 12 > item.Length)
            {
                throw BlockException.Invalid($"vhdx: parent locator entry {i} lies beyond the locator");
            }

            var e = item.AsSpan(at, 12);
            string Text(int offset, int length) =>
                (long)offset + length <= item.Length
                    ? Encoding.Unicode.GetString(item, offset, length)
                    : throw BlockException.Invalid($"vhdx: parent locator entry {i} points beyond the locator");
            var key = Text((int)BinaryPrimitives.ReadUInt32LittleEndian(e), BinaryPrimitives.ReadUInt16LittleEndian(e[8..]));
            result[key] = Text((int)BinaryPrimitives.ReadUInt32LittleEndian(e[4..]), BinaryPrimitives.ReadUInt16LittleEndian(e[10..]));
        }

        return result;
    }

    /// <summary>The bytes <see cref="Write"/> fills: the table, the five required items and, for a differencing image, the parent locator.</summary>
    public int EncodedLength => TableSize + 64 + (HasParentImage ? EncodeLocator().Length : 0);

    /// <summary>Encodes the table and the items into <paramref name="region"/> (<see cref="EncodedLength"/> bytes).</summary>
    public void Write(Span<byte> region)
    {
        region[..EncodedLength].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(region, VhdxFormat.MetadataSignature);
        BinaryPrimitives.WriteUInt16LittleEndian(region[10..], (ushort)(s_required.Length + (HasParentImage ? 1 : 0)));
        var offset = TableSize;
        int[] lengths = [8, 8, 16, 4, 4];
        for (var i = 0; i < s_required.Length; i++)
        {
            var item = WriteEntry(region, i, s_required[i], offset, lengths[i], i == 0 ? RequiredBit : RequiredBit | 2);
            switch (i)
            {
                case 0:
                    BinaryPrimitives.WriteUInt32LittleEndian(item, BlockSize);
                    BinaryPrimitives.WriteUInt32LittleEndian(item[4..], (IsFixed ? LeaveBlocksAllocated : 0) | (HasParentImage ? HasParent : 0));
                    break;
                case 1:
                    BinaryPrimitives.WriteUInt64LittleEndian(item, VirtualSize);
                    break;
                case 2:
                    Page83.TryWriteBytes(item);
                    break;
                case 3:
                    BinaryPrimitives.WriteUInt32LittleEndian(item, LogicalSectorSize);
                    break;
                default:
                    BinaryPrimitives.WriteUInt32LittleEndian(item, PhysicalSectorSize);
                    break;
            }

            offset += lengths[i];
        }

        if (HasParentImage)
        {
            var locator = EncodeLocator();
            locator.CopyTo(WriteEntry(region, s_required.Length, VhdxFormat.ParentLocator, TableSize + 64, locator.Length, RequiredBit | 2));
        }
    }

    /// <summary>Table entry <paramref name="index"/> (item id, offset, length, flags); returns the item's bytes.</summary>
    private static Span<byte> WriteEntry(Span<byte> region, int index, Guid id, int offset, int length, uint flags)
    {
        var e = region.Slice(TableHeaderSize + (index * EntrySize), EntrySize);
        id.TryWriteBytes(e[..16]);
        BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(e[20..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(e[24..], flags);
        return region.Slice(offset, length);
    }

    /// <summary>The parent locator item: its type, the entry count, 12-byte entries, then the keys and values in UTF-16.</summary>
    private byte[] EncodeLocator()
    {
        var entries = ParentLocator.ToList();
        var strings = new List<byte>();
        var item = new byte[20 + (12 * entries.Count)];
        VhdxFormat.VhdxParentLocatorType.TryWriteBytes(item);
        BinaryPrimitives.WriteUInt16LittleEndian(item.AsSpan(18), (ushort)entries.Count);
        for (var i = 0; i < entries.Count; i++)
        {
            var e = item.AsSpan(20 + (i * 12), 12);
            var key = Encoding.Unicode.GetBytes(entries[i].Key);
            var value = Encoding.Unicode.GetBytes(entries[i].Value);
            BinaryPrimitives.WriteUInt32LittleEndian(e, (uint)(item.Length + strings.Count));
            strings.AddRange(key);
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], (uint)(item.Length + strings.Count));
            strings.AddRange(value);
            BinaryPrimitives.WriteUInt16LittleEndian(e[8..], (ushort)key.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(e[10..], (ushort)value.Length);
        }

        return [.. item, .. strings];
    }
}
