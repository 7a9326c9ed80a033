namespace ExportServer.Block.Formats.Vdi;

/// <summary>Constants of VirtualBox's VDI format as QEMU supports it (version 1.1, 1 MiB blocks, 512-byte sectors).</summary>
internal static class VdiFormat
{
    public const int HeaderSize = 512;
    public const int SectorSize = 512;
    public const uint Signature = 0xbeda107f;
    public const uint Version = 0x00010001;
    public const uint TypeDynamic = 1;
    public const uint TypeStatic = 2;
    public const int BlockSize = 1024 * 1024;

    /// <summary>A block never written: reads as zeroes.</summary>
    public const uint Unallocated = 0xffffffff;

    /// <summary>A block discarded: reads as zeroes too.</summary>
    public const uint Discarded = 0xfffffffe;

    /// <summary>QEMU's limit: the block map, rounded to sectors, fits in an int.</summary>
    public const uint MaxBlocks = (int.MaxValue + 1u - SectorSize) / 4;

    public const long MaxDiskSize = (long)MaxBlocks * BlockSize;

    /// <summary>What QEMU writes into the header's text.</summary>
    public const string Text = "<<< QEMU VM Virtual Disk Image >>>\n";

    public static bool IsAllocated(uint entry) => entry < Discarded;
}
