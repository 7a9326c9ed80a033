namespace ExportServer.Block.Formats.Vpc;

/// <summary>Constants of the VHD (Virtual PC) format: sizes, cookies, disk types and QEMU's limits.</summary>
internal static class VpcFormat
{
    public const int SectorSize = 512;

    /// <summary>The footer, at the end of every image and, for dynamic disks, also at offset 0.</summary>
    public const int FooterSize = 512;

    public const int DynamicHeaderSize = 1024;

    public const uint DiskFixed = 2;
    public const uint DiskDynamic = 3;
    public const uint DiskDifferencing = 4;

    /// <summary>A BAT entry for a block that has no storage (reads as zeroes).</summary>
    public const uint Unallocated = 0xffffffff;

    /// <summary>What QEMU creates: 2 MiB blocks, the BAT right after the dynamic header.</summary>
    public const int DefaultBlockSize = 2 * 1024 * 1024;
    public const long CreatedTableOffset = 3 * SectorSize;

    /// <summary>Timestamps count seconds from 2000-01-01 00:00:00 UTC.</summary>
    public const long TimestampBase = 946684800;

    public const long MaxCylinders = 65535;
    public const long MaxHeads = 16;
    public const long MaxSectorsPerTrack = 255;

    /// <summary>The largest CHS geometry; an image that has it takes its size from the footer's current size.</summary>
    public const long MaxGeometrySectors = MaxCylinders * MaxHeads * MaxSectorsPerTrack;

    /// <summary>2040 GiB, the largest image QEMU opens or creates.</summary>
    public const long MaxSectors = 0xff000000;

    public static ReadOnlySpan<byte> FooterCookie => "conectix"u8;

    public static ReadOnlySpan<byte> DynamicCookie => "cxsparse"u8;

    /// <summary>
    /// The one's complement of the byte sum with the checksum field (4 bytes at
    /// <paramref name="checksumOffset"/>) counted as zero; footer and dynamic header use the same rule.
    /// </summary>
    public static uint Checksum(ReadOnlySpan<byte> structure, int checksumOffset)
    {
        uint sum = 0;
        for (var i = 0; i < structure.Length; i++)
        {
            if (i < checksumOffset || i >= checksumOffset + 4)
            {
                sum += structure[i];
            }
        }

        return ~sum;
    }
}
