using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The header of a hosted sparse extent (VMDK4, magic "KDMV"), in its first sector and, for a
/// stream whose grain directory is written last, again in the footer. Offsets and sizes are in
/// sectors. <see cref="Read"/> checks what needs no file: version, granularity and table geometry.
/// </summary>
internal sealed record VmdkSparseHeader
{
    public const int Size = 79;

    private const int OffMagic = 0;
    private const int OffVersion = 4;
    private const int OffFlags = 8;
    private const int OffCapacity = 12;
    private const int OffGranularity = 20;
    private const int OffDescriptorOffset = 28;
    private const int OffDescriptorSize = 36;
    private const int OffGrainTableEntries = 44;
    private const int OffRedundantGrainDirectory = 48;
    private const int OffGrainDirectory = 56;
    private const int OffGrainOffset = 64;
    private const int OffCheckBytes = 73;
    private const int OffCompression = 77;

    /// <summary>"\n \r\n": lets readers notice a file damaged by newline conversion.</summary>
    private static ReadOnlySpan<byte> CheckBytes => [0x0a, 0x20, 0x0d, 0x0a];

    public uint Version { get; init; } = 1;

    public uint Flags { get; init; }

    public ulong Capacity { get; init; }

    public ulong Granularity { get; init; }

    public ulong DescriptorOffset { get; init; }

    public ulong DescriptorSize { get; init; }

    public uint GrainTableEntries { get; init; }

    public ulong RedundantGrainDirectoryOffset { get; init; }

    public ulong GrainDirectoryOffset { get; init; }

    public ulong GrainOffset { get; init; }

    public ushort Compression { get; init; }

    public bool IsCompressed => Compression == VmdkFormat.CompressionDeflate;

    public bool HasMarkers => (Flags & VmdkFormat.FlagMarkers) != 0;

    public bool HasZeroGrains => (Flags & VmdkFormat.FlagZeroGrain) != 0;

    public bool HasRedundantGrainDirectory => (Flags & VmdkFormat.FlagRedundantGrainDirectory) != 0;

    /// <summary>Parses the fields (the magic is the caller's business); <paramref name="fileName"/> names the file in errors.</summary>
    public static VmdkSparseHeader Parse(ReadOnlySpan<byte> b, string fileName)
    {
        if (b.Length < Size)
        {
            throw BlockException.Invalid($"vmdk: header of '{fileName}' truncated ({b.Length} of {Size} bytes)");
        }

        return new VmdkSparseHeader
        {
            Version = BinaryPrimitives.ReadUInt32LittleEndian(b[OffVersion..]),
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(b[OffFlags..]),
            Capacity = BinaryPrimitives.ReadUInt64LittleEndian(b[OffCapacity..]),
            Granularity = BinaryPrimitives.ReadUInt64LittleEndian(b[OffGranularity..]),
            DescriptorOffset = BinaryPrimitives.ReadUInt64LittleEndian(b[OffDescriptorOffset..]),
            DescriptorSize = BinaryPrimitives.ReadUInt64LittleEndian(b[OffDescriptorSize..]),
            GrainTableEntries = BinaryPrimitives.ReadUInt32LittleEndian(b[OffGrainTableEntries..]),
            RedundantGrainDirectoryOffset = BinaryPrimitives.ReadUInt64LittleEndian(b[OffRedundantGrainDirectory..]),
            GrainDirectoryOffset = BinaryPrimitives.ReadUInt64LittleEndian(b[OffGrainDirectory..]),
            GrainOffset = BinaryPrimitives.ReadUInt64LittleEndian(b[OffGrainOffset..]),
            Compression = BinaryPrimitives.ReadUInt16LittleEndian(b[OffCompression..]),
        };
    }

    /// <summary>
    /// QEMU's checks of a header it is about to use, in its words, with the field named:
    /// version, grain table size, grain size and the grain directory's length.
    /// </summary>
    public void Validate(string fileName)
    {
        if (Version > 3)
        {
            throw BlockException.NotSupported($"Unsupported VMDK version {Version}");
        }

        if (GrainTableEntries > VmdkFormat.MaxSparseGrainTableEntries)
        {
            throw BlockException.Invalid($"L2 table size too big (num_gtes_per_gt {GrainTableEntries} in '{fileName}', at most {VmdkFormat.MaxSparseGrainTableEntries})");
        }

        if (GrainTableEntries == 0 || Granularity == 0)
        {
            throw BlockException.Invalid($"L1 entry size is invalid (num_gtes_per_gt {GrainTableEntries}, granularity {Granularity} in '{fileName}')");
        }

        if (Granularity > VmdkFormat.MaxGrainSectors)
        {
            throw new BlockException(Errno.EFBIG, $"Invalid granularity, image may be corrupt (granularity {Granularity} sectors in '{fileName}')");
        }

        if (Capacity >= VmdkFormat.MaxExtentSectors * VmdkFormat.MaxGrainSectors)
        {
            throw BlockException.Invalid($"vmdk: capacity {Capacity} sectors in '{fileName}' is too large");
        }
    }

    /// <summary>Entries of the grain directory: one per grain table's span of the capacity.</summary>
    public long GrainDirectoryEntries => (long)((Capacity + (GrainTableEntries * Granularity) - 1) / (GrainTableEntries * Granularity));

    public void Write(Span<byte> b)
    {
        b[..Size].Clear();
        BinaryPrimitives.WriteUInt32BigEndian(b[OffMagic..], VmdkFormat.SparseMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(b[OffVersion..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(b[OffFlags..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffCapacity..], Capacity);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffGranularity..], Granularity);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffDescriptorOffset..], DescriptorOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffDescriptorSize..], DescriptorSize);
        BinaryPrimitives.WriteUInt32LittleEndian(b[OffGrainTableEntries..], GrainTableEntries);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffRedundantGrainDirectory..], RedundantGrainDirectoryOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffGrainDirectory..], GrainDirectoryOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffGrainOffset..], GrainOffset);
        CheckBytes.CopyTo(b[OffCheckBytes..]);
        BinaryPrimitives.WriteUInt16LittleEndian(b[OffCompression..], Compression);
    }
}
