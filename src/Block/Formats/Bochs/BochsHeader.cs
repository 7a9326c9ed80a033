using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Bochs;

/// <summary>
/// The 512-byte header of a Bochs growing redolog image (little-endian): the catalog of extents, the
/// bitmap and extent sizes and the disk size (at offset 84 in version 1, 88 in version 2).
/// <see cref="Read"/> refuses what QEMU's bochs_open refuses, in its words.
/// </summary>
internal sealed record BochsHeader
{
    public const int Length = 512;
    public const uint Version1 = 0x00010000;
    public const uint Version2 = 0x00020000;

    /// <summary>A catalog entry of an extent never written.</summary>
    public const uint Unallocated = 0xffffffff;

    /// <summary>QEMU's limit on catalog entries (bounds the memory an image can make us take).</summary>
    public const uint MaxCatalogEntries = 0x100000;

    public const uint MaxExtentSize = 0x800000;

    private const int OffMagic = 0;
    private const int OffType = 32;
    private const int OffSubtype = 48;
    private const int OffVersion = 64;
    private const int OffHeaderSize = 68;
    private const int OffCatalog = 72;
    private const int OffBitmap = 76;
    private const int OffExtent = 80;
    private const int OffDiskV1 = 84;
    private const int OffDiskV2 = 88;

    public static ReadOnlySpan<byte> Magic => "Bochs Virtual HD Image"u8;

    public static ReadOnlySpan<byte> RedologType => "Redolog"u8;

    public static ReadOnlySpan<byte> GrowingSubtype => "Growing"u8;

    public uint HeaderSize { get; init; }

    public uint CatalogEntries { get; init; }

    public uint BitmapSize { get; init; }

    public uint ExtentSize { get; init; }

    public ulong DiskSize { get; init; }

    /// <summary>QEMU's bochs_probe test: the three strings and a known version.</summary>
    public static bool Matches(ReadOnlySpan<byte> h)
    {
        if (h.Length < Length)
        {
            return false;
        }

        var version = BinaryPrimitives.ReadUInt32LittleEndian(h[OffVersion..]);
        return IsString(h.Slice(OffMagic, 32), Magic) && IsString(h.Slice(OffType, 16), RedologType) &&
               IsString(h.Slice(OffSubtype, 16), GrowingSubtype) && (version == Version1 || version == Version2);
    }

    /// <summary>A NUL-terminated string field equal to <paramref name="value"/> (strcmp on the field).</summary>
    private static bool IsString(ReadOnlySpan<byte> field, ReadOnlySpan<byte> value) =>
        field.StartsWith(value) && field.Length > value.Length && field[value.Length] == 0;

    public static BochsHeader Read(ReadOnlySpan<byte> h)
    {
        if (!Matches(h))
        {
            throw BlockException.Invalid("Image not in Bochs format");
        }

        var version = BinaryPrimitives.ReadUInt32LittleEndian(h[OffVersion..]);
        var header = new BochsHeader
        {
            HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffHeaderSize..]),
            CatalogEntries = BinaryPrimitives.ReadUInt32LittleEndian(h[OffCatalog..]),
            BitmapSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBitmap..]),
            ExtentSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffExtent..]),
            DiskSize = BinaryPrimitives.ReadUInt64LittleEndian(h[(version == Version1 ? OffDiskV1 : OffDiskV2)..]) / 512 * 512,
        };
        if (header.CatalogEntries > MaxCatalogEntries)
        {
            throw new BlockException(Errno.EFBIG, "Catalog size is too large");
        }

        return header;
    }

    /// <summary>The checks QEMU makes after reading the catalog.</summary>
    public void Validate()
    {
        if (ExtentSize < 512)
        {
            throw BlockException.Invalid("Extent size must be at least 512");
        }

        if ((ExtentSize & (ExtentSize - 1)) != 0)
        {
            throw BlockException.Invalid($"Extent size {ExtentSize} is not a power of two");
        }

        if (ExtentSize > MaxExtentSize)
        {
            throw BlockException.Invalid($"Extent size {ExtentSize} is too large");
        }

        var sectors = DiskSize / 512;
        var perExtent = ExtentSize / 512;
        if (CatalogEntries < (sectors + perExtent - 1) / perExtent)
        {
            throw BlockException.Invalid("Catalog size is too small for this disk size");
        }
    }

    /// <summary>Sectors each extent's bitmap takes, and sectors of data per extent (QEMU's rounding).</summary>
    public long BitmapSectors => 1 + ((long)BitmapSize - 1) / 512;

    public long ExtentSectors => 1 + ((long)ExtentSize - 1) / 512;
}
