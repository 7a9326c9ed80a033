using System.Numerics;
using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>Constants of the VHDX format (little-endian throughout), its GUIDs and its CRC-32C checksum.</summary>
internal static class VhdxFormat
{
    public const int KiB = 1024;
    public const int MiB = 1024 * 1024;

    /// <summary>The header section: file identifier, two headers, two region tables, in 64 KiB blocks, 1 MiB in all.</summary>
    public const int HeaderBlockSize = 64 * KiB;
    public const long Header1Offset = 1 * HeaderBlockSize;
    public const long Header2Offset = 2 * HeaderBlockSize;
    public const long RegionTable1Offset = 3 * HeaderBlockSize;
    public const long RegionTable2Offset = 4 * HeaderBlockSize;
    public const long HeaderSectionEnd = MiB;

    /// <summary>A header's checksum covers its first 4 KiB.</summary>
    public const int HeaderSize = 4 * KiB;

    public const int LogSectorSize = 4 * KiB;
    public const int MinBlockSize = MiB;
    public const int MaxBlockSize = 256 * MiB;
    public const long MaxImageSize = 64L << 40;
    public const long MaxSectorsPerBlock = 1 << 23;
    public const int MaxTableEntries = 2047;

    /// <summary>The largest log replayed; logs are 1 MiB unless made otherwise.</summary>
    public const long MaxReplayedLog = 256L * MiB;

    public const ulong FileSignature = 0x656C696678646876; // "vhdxfile"
    public const uint HeaderSignature = 0x64616568;         // "head"
    public const uint RegionSignature = 0x69676572;         // "regi"
    public const ulong MetadataSignature = 0x617461646174656D; // "metadata"
    public const uint LogEntrySignature = 0x65676f6c;       // "loge"
    public const uint DataDescriptorSignature = 0x63736564; // "desc"
    public const uint ZeroDescriptorSignature = 0x6f72657a; // "zero"
    public const uint DataSectorSignature = 0x61746164;     // "data"

    public static readonly Guid BatRegion = new("2dc27766-f623-4200-9d64-115e9bfd4a08");
    public static readonly Guid MetadataRegion = new("8b7ca206-4790-4b9a-b8fe-575f050f886e");
    public static readonly Guid FileParameters = new("caa16737-fa36-4d43-b3b6-33f0aa44e76b");
    public static readonly Guid VirtualDiskSize = new("2fa54224-cd1b-4876-b211-5dbed83bf4b8");
    public static readonly Guid Page83Data = new("beca12ab-b2e6-4523-93ef-c309e000c746");
    public static readonly Guid LogicalSectorSize = new("8141bf1d-a96f-4709-ba47-f233a8faab5f");
    public static readonly Guid PhysicalSectorSize = new("cda348c7-445d-4471-9cc9-e9885251c556");
    public static readonly Guid ParentLocator = new("a8d35f2d-b30b-454d-abf7-d3d84834ab0c");

    /// <summary>The locator type of a VHDX parent (the only one the specification defines).</summary>
    public static readonly Guid VhdxParentLocatorType = new("b04aefb7-d19e-4a81-b789-25b8e9445913");

    /// <summary>CRC-32C (Castagnoli) of <paramref name="data"/> with the 4 bytes at <paramref name="checksumOffset"/> counted as zero.</summary>
    public static uint Checksum(ReadOnlySpan<byte> data, int checksumOffset)
    {
        var crc = Crc(0xffffffff, data[..checksumOffset]);
        crc = Crc(crc, [0, 0, 0, 0]);
        return ~Crc(crc, data[(checksumOffset + 4)..]);
    }

    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var w in words)
        {
            crc = BitOperations.Crc32C(crc, w);
        }

        foreach (var b in data[(words.Length * 8)..])
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return crc;
    }
}
