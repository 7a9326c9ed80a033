namespace ExportServer.Block.Formats.Vmdk;

/// <summary>VMDK constants: magics, header flags, grain table entry values and the marker types of stream-optimized extents.</summary>
internal static class VmdkFormat
{
    public const int SectorSize = 512;

    /// <summary>"KDMV" read big-endian: the hosted sparse extent (VMDK4).</summary>
    public const uint SparseMagic = 0x4b444d56;

    /// <summary>"COWD" read big-endian: the ESX sparse extent (VMDK3).</summary>
    public const uint CowdMagic = 0x434f5744;

    public const uint FlagNewlineDetect = 1 << 0;
    public const uint FlagRedundantGrainDirectory = 1 << 1;
    public const uint FlagZeroGrain = 1 << 2;
    public const uint FlagCompressed = 1 << 16;
    public const uint FlagMarkers = 1 << 17;

    public const ushort CompressionDeflate = 1;

    /// <summary>gd_offset of a stream whose grain directory follows the data; the footer holds the real header.</summary>
    public const ulong GrainDirectoryAtEnd = ulong.MaxValue;

    /// <summary>A grain table entry that reads as zeroes (with <see cref="FlagZeroGrain"/>).</summary>
    public const uint ZeroGrainEntry = 1;

    /// <summary>An extent holds at most 2^32 sectors: grain table entries are 32-bit sector numbers.</summary>
    public const long MaxExtentSectors = 1L << 32;

    /// <summary>QEMU's limits: a grain of 1 GiB, a grain directory of 32 Mi entries, 512 entries per grain table (VMDK4).</summary>
    public const long MaxGrainSectors = 0x200000;
    public const long MaxGrainDirectoryEntries = 32 * 1024 * 1024;
    public const int MaxSparseGrainTableEntries = 512;

    /// <summary>VMDK3 (COWD) grain tables always have 4096 entries.</summary>
    public const int CowdGrainTableEntries = 4096;

    /// <summary>The most of a file read as a descriptor (QEMU's bound), and the space QEMU reserves for an embedded one.</summary>
    public const int MaxDescriptorBytes = (1 << 20) - 1;
    public const int EmbeddedDescriptorSectors = 20;

    public const uint MarkerEndOfStream = 0;
    public const uint MarkerGrainTable = 1;
    public const uint MarkerGrainDirectory = 2;
    public const uint MarkerFooter = 3;

    /// <summary>The CID that means "no parent".</summary>
    public const uint NoParentCid = 0xffffffff;
}
