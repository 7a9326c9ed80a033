namespace ExportServer.Block.Formats.Qed;

/// <summary>Constants of the QED format (QEMU Enhanced Disk): little-endian, two-level tables of cluster offsets.</summary>
internal static class QedFormat
{
    /// <summary>"QED\0" read as a little-endian number.</summary>
    public const uint Magic = 0x00444551;

    public const int HeaderLength = 64;

    public const uint MinClusterSize = 4096;
    public const uint MaxClusterSize = 64 * 1024 * 1024;
    public const uint DefaultClusterSize = 65536;
    public const uint MinTableSize = 1;
    public const uint MaxTableSize = 16;
    public const uint DefaultTableSize = 4;

    /// <summary>The header names a backing file.</summary>
    public const ulong FeatureBackingFile = 1;

    /// <summary>The image was not closed cleanly: its tables are checked before it is written again.</summary>
    public const ulong FeatureNeedCheck = 2;

    /// <summary>The backing file is raw, not probed.</summary>
    public const ulong FeatureBackingFormatNoProbe = 4;

    public const ulong KnownFeatures = FeatureBackingFile | FeatureNeedCheck | FeatureBackingFormatNoProbe;

    /// <summary>Table entry of a cluster never written (reads the backing file, or zeroes).</summary>
    public const ulong Unallocated = 0;

    /// <summary>Table entry of a cluster that reads as zeroes whatever lies below.</summary>
    public const ulong ZeroCluster = 1;

    public static bool IsPowerOfTwoIn(ulong value, ulong min, ulong max) => value >= min && value <= max && (value & (value - 1)) == 0;

    public static bool IsClusterSizeValid(ulong size) => IsPowerOfTwoIn(size, MinClusterSize, MaxClusterSize);

    public static bool IsTableSizeValid(ulong size) => IsPowerOfTwoIn(size, MinTableSize, MaxTableSize);

    /// <summary>The largest image two levels of tables address (QEMU's qed_max_image_size).</summary>
    public static ulong MaxImageSize(ulong clusterSize, ulong tableSize)
    {
        var entries = clusterSize * tableSize / 8;
        return entries * entries * clusterSize;
    }

    /// <summary>QEMU's qed_is_image_size_valid: whole sectors, within what the tables address.</summary>
    public static bool IsImageSizeValid(ulong size, ulong clusterSize, ulong tableSize) =>
        size % 512 == 0 && size <= MaxImageSize(clusterSize, tableSize);
}
