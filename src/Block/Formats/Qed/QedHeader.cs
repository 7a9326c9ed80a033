using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>
/// The 64-byte QED header (little-endian): cluster and table sizes, feature bits, where the L1 table
/// is, the image size and where the backing file name is. <see cref="Read"/> checks what needs no
/// file size (QEMU's order and words); the node checks the offsets against the file.
/// </summary>
internal sealed record QedHeader
{
    private const int OffMagic = 0;
    private const int OffClusterSize = 4;
    private const int OffTableSize = 8;
    private const int OffHeaderSize = 12;
    private const int OffFeatures = 16;
    private const int OffCompatFeatures = 24;
    private const int OffAutoclearFeatures = 32;
    private const int OffL1Table = 40;
    private const int OffImageSize = 48;
    private const int OffBackingNameOffset = 56;
    private const int OffBackingNameSize = 60;

    public uint ClusterSize { get; init; } = QedFormat.DefaultClusterSize;

    /// <summary>Clusters per table (L1 and L2 alike).</summary>
    public uint TableSize { get; init; } = QedFormat.DefaultTableSize;

    /// <summary>Clusters the header area takes (header and backing file name).</summary>
    public uint HeaderSize { get; init; } = 1;

    public ulong Features { get; set; }

    public ulong CompatFeatures { get; init; }

    public ulong AutoclearFeatures { get; set; }

    public ulong L1TableOffset { get; init; }

    public ulong ImageSize { get; set; }

    public uint BackingNameOffset { get; init; }

    public uint BackingNameSize { get; init; }

    public long TableBytes => (long)ClusterSize * TableSize;

    public int TableEntries => (int)(TableBytes / 8);

    public bool NeedCheck => (Features & QedFormat.FeatureNeedCheck) != 0;

    public static QedHeader Read(ReadOnlySpan<byte> bytes)
    {
        var h = bytes[..QedFormat.HeaderLength];
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[OffMagic..]) != QedFormat.Magic)
        {
            throw BlockException.Invalid("Image not in QED format");
        }

        var features = BinaryPrimitives.ReadUInt64LittleEndian(h[OffFeatures..]);
        if ((features & ~QedFormat.KnownFeatures) != 0)
        {
            throw BlockException.NotSupported($"Unsupported QED features: {features & ~QedFormat.KnownFeatures:x}");
        }

        var header = new QedHeader
        {
            ClusterSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffClusterSize..]),
            TableSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffTableSize..]),
            HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffHeaderSize..]),
            Features = features,
            CompatFeatures = BinaryPrimitives.ReadUInt64LittleEndian(h[OffCompatFeatures..]),
            AutoclearFeatures = BinaryPrimitives.ReadUInt64LittleEndian(h[OffAutoclearFeatures..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[OffL1Table..]),
            ImageSize = BinaryPrimitives.ReadUInt64LittleEndian(h[OffImageSize..]),
            BackingNameOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBackingNameOffset..]),
            BackingNameSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBackingNameSize..]),
        };
        if (!QedFormat.IsClusterSizeValid(header.ClusterSize))
        {
            throw BlockException.Invalid("QED cluster size is invalid");
        }

        return header;
    }

    /// <summary>The checks QEMU makes once it knows the file size (rounded down to whole clusters).</summary>
    public void Validate(long fileSize)
    {
        if (!QedFormat.IsTableSizeValid(TableSize))
        {
            throw BlockException.Invalid("QED table size is invalid");
        }

        if (!QedFormat.IsImageSizeValid(ImageSize, ClusterSize, TableSize))
        {
            throw BlockException.Invalid("QED image size is invalid");
        }

        if (!IsTableOffsetValid(L1TableOffset, fileSize))
        {
            throw BlockException.Invalid("QED table offset is invalid");
        }

        if (HeaderSize > uint.MaxValue / ClusterSize)
        {
            throw BlockException.Invalid("QED header size is too large");
        }

        if ((Features & QedFormat.FeatureBackingFile) != 0 &&
            (ulong)BackingNameOffset + BackingNameSize > (ulong)ClusterSize * HeaderSize)
        {
            throw BlockException.Invalid("QED backing filename offset is invalid");
        }
    }

    /// <summary>QEMU's qed_check_cluster_offset: aligned, past the header, inside the file.</summary>
    public bool IsClusterOffsetValid(ulong offset, long fileSize) =>
        (offset & (ClusterSize - 1)) == 0 && offset >= (ulong)HeaderSize * ClusterSize && offset < (ulong)fileSize;

    /// <summary>
    /// QEMU's qed_check_table_offset: the table's first and last clusters valid. As in QEMU, a table
    /// of one cluster never passes (its last cluster is not past its first).
    /// </summary>
    public bool IsTableOffsetValid(ulong offset, long fileSize)
    {
        var end = offset + ((ulong)(TableSize - 1) * ClusterSize);
        return end > offset && IsClusterOffsetValid(offset, fileSize) && IsClusterOffsetValid(end, fileSize);
    }

    public void Write(Span<byte> bytes)
    {
        var h = bytes[..QedFormat.HeaderLength];
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffMagic..], QedFormat.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffClusterSize..], ClusterSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffTableSize..], TableSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffHeaderSize..], HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffFeatures..], Features);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffCompatFeatures..], CompatFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffAutoclearFeatures..], AutoclearFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffL1Table..], L1TableOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffImageSize..], ImageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBackingNameOffset..], BackingNameOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBackingNameSize..], BackingNameSize);
    }
}
