namespace ExportServer.Block.Formats.Parallels;

/// <summary>Constants of the Parallels (ploop) image format as QEMU reads and writes it: a 64-byte header, the BAT, then clusters.</summary>
internal static class ParallelsFormat
{
    public const int HeaderSize = 64;
    public const int SectorSize = 512;
    public const uint Version = 2;

    /// <summary>The value of the header's inuse field while an image is open for writing (QEMU's HEADER_INUSE_MAGIC).</summary>
    public const uint InUseMagic = 0x746f6e59;

    public const long DefaultClusterSize = 1024 * 1024;

    /// <summary>The geometry QEMU writes into a new header; nothing reads it.</summary>
    public const uint Heads = 16;
    public const uint SectorsPerCylinder = 32;

    /// <summary>QEMU's MAX_PARALLELS_IMAGE_FACTOR: at most 2^32 clusters.</summary>
    public const ulong MaxImageFactor = 1UL << 32;

    /// <summary>QEMU's limit on sectors per cluster (INT32_MAX / 513).</summary>
    public const uint MaxTracks = int.MaxValue / 513;

    /// <summary>QEMU's limit on BAT entries (INT_MAX / 4).</summary>
    public const uint MaxBatEntries = int.MaxValue / 4;

    /// <summary>How far the file grows beyond a new cluster unless prealloc-size says otherwise (QEMU's default 128M).</summary>
    public const long DefaultPreallocSize = 128L * 1024 * 1024;

    /// <summary>The old magic: BAT entries are sector offsets and the disk size is 32 bits.</summary>
    public static ReadOnlySpan<byte> Magic => "WithoutFreeSpace"u8;

    /// <summary>The magic QEMU writes: BAT entries count clusters and the disk size is 64 bits.</summary>
    public static ReadOnlySpan<byte> MagicExt => "WithouFreSpacExt"u8;

    /// <summary>The file offset of BAT entry <paramref name="index"/>.</summary>
    public static long EntryOffset(long index) => HeaderSize + (index * 4);
}
