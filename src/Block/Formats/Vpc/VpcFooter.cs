using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// The 512-byte "hard disk footer" (big-endian): disk type, sizes, CHS geometry and, for dynamic
/// disks, where the dynamic header is. <see cref="Read"/> checks the cookie and the checksum.
/// </summary>
internal sealed record VpcFooter
{
    private const int OffCookie = 0;
    private const int OffFeatures = 8;
    private const int OffVersion = 12;
    private const int OffDataOffset = 16;
    private const int OffTimestamp = 24;
    private const int OffCreatorApp = 28;
    private const int OffCreatorVersionMajor = 32;
    private const int OffCreatorVersionMinor = 34;
    private const int OffCreatorOs = 36;
    private const int OffOriginalSize = 40;
    private const int OffCurrentSize = 48;
    private const int OffCylinders = 56;
    private const int OffHeads = 58;
    private const int OffSectorsPerTrack = 59;
    private const int OffDiskType = 60;
    internal const int OffChecksum = 64;
    private const int OffUniqueId = 68;

    /// <summary>Creator applications whose images are sized by the footer's current size, not by CHS (QEMU's list).</summary>
    private static readonly string[] s_currentSizeCreators = ["win ", "qem2", "d2v ", "CTXS", "tap\0"];

    public uint Features { get; init; } = 2;

    public uint Version { get; init; } = 0x00010000;

    /// <summary>Offset of the dynamic header; all ones for a fixed disk.</summary>
    public ulong DataOffset { get; init; } = ulong.MaxValue;

    public uint Timestamp { get; init; }

    /// <summary>Four characters naming the program that made the image ("vpc ", "win ", "qemu", "qem2", …).</summary>
    public string CreatorApp { get; init; } = "qemu";

    public ushort CreatorVersionMajor { get; init; } = 5;

    public ushort CreatorVersionMinor { get; init; } = 3;

    public string CreatorOs { get; init; } = "Wi2k";

    public ulong OriginalSize { get; init; }

    public ulong CurrentSize { get; init; }

    public ushort Cylinders { get; init; }

    public byte Heads { get; init; }

    public byte SectorsPerTrack { get; init; }

    public uint DiskType { get; init; }

    public Guid UniqueId { get; init; }

    public long GeometrySectors => (long)Cylinders * Heads * SectorsPerTrack;

    public bool IsFixed => DiskType == VpcFormat.DiskFixed;

    /// <summary>
    /// The virtual size QEMU gives the image: Virtual PC sizes a disk by its geometry, Hyper-V and
    /// the converters by the current size; the maximum geometry means the current size too.
    /// </summary>
    public long VirtualSectors =>
        s_currentSizeCreators.Contains(CreatorApp) || GeometrySectors == VpcFormat.MaxGeometrySectors
            ? (long)(CurrentSize / VpcFormat.SectorSize)
            : GeometrySectors;

    public static bool HasCookie(ReadOnlySpan<byte> sector) =>
        sector.Length >= VpcFormat.FooterSize && sector[..8].SequenceEqual(VpcFormat.FooterCookie);

    /// <summary>Decodes a footer whose cookie the caller found; a wrong checksum is refused.</summary>
    public static VpcFooter Read(ReadOnlySpan<byte> sector)
    {
        var footer = sector[..VpcFormat.FooterSize];
        var stored = BinaryPrimitives.ReadUInt32BigEndian(footer[OffChecksum..]);
        var computed = VpcFormat.Checksum(footer, OffChecksum);
        if (stored != computed)
        {
            throw BlockException.Invalid($"Incorrect header checksum (footer checksum 0x{stored:x8}, computed 0x{computed:x8})");
        }

        return new VpcFooter
        {
            Features = BinaryPrimitives.ReadUInt32BigEndian(footer[OffFeatures..]),
            Version = BinaryPrimitives.ReadUInt32BigEndian(footer[OffVersion..]),
            DataOffset = BinaryPrimitives.ReadUInt64BigEndian(footer[OffDataOffset..]),
            Timestamp = BinaryPrimitives.ReadUInt32BigEndian(footer[OffTimestamp..]),
            CreatorApp = Latin1(footer.Slice(OffCreatorApp, 4)),
            CreatorVersionMajor = BinaryPrimitives.ReadUInt16BigEndian(footer[OffCreatorVersionMajor..]),
            CreatorVersionMinor = BinaryPrimitives.ReadUInt16BigEndian(footer[OffCreatorVersionMinor..]),
            CreatorOs = Latin1(footer.Slice(OffCreatorOs, 4)),
            OriginalSize = BinaryPrimitives.ReadUInt64BigEndian(footer[OffOriginalSize..]),
            CurrentSize = BinaryPrimitives.ReadUInt64BigEndian(footer[OffCurrentSize..]),
            Cylinders = BinaryPrimitives.ReadUInt16BigEndian(footer[OffCylinders..]),
            Heads = footer[OffHeads],
            SectorsPerTrack = footer[OffSectorsPerTrack],
            DiskType = BinaryPrimitives.ReadUInt32BigEndian(footer[OffDiskType..]),
            UniqueId = new Guid(footer.Slice(OffUniqueId, 16), bigEndian: true),
        };
    }

    /// <summary>Encodes the footer into 512 bytes (reserved bytes zero) with its checksum.</summary>
    public void Write(Span<byte> sector)
    {
        var footer = sector[..VpcFormat.FooterSize];
        footer.Clear();
        VpcFormat.FooterCookie.CopyTo(footer[OffCookie..]);
        BinaryPrimitives.WriteUInt32BigEndian(footer[OffFeatures..], Features);
        BinaryPrimitives.WriteUInt32BigEndian(footer[OffVersion..], Version);
        BinaryPrimitives.WriteUInt64BigEndian(footer[OffDataOffset..], DataOffset);
        BinaryPrimitives.WriteUInt32BigEndian(footer[OffTimestamp..], Timestamp);
        WriteLatin1(footer.Slice(OffCreatorApp, 4), CreatorApp);
        BinaryPrimitives.WriteUInt16BigEndian(footer[OffCreatorVersionMajor..], CreatorVersionMajor);
        BinaryPrimitives.WriteUInt16BigEndian(footer[OffCreatorVersionMinor..], CreatorVersionMinor);
        WriteLatin1(footer.Slice(OffCreatorOs, 4), CreatorOs);
        BinaryPrimitives.WriteUInt64BigEndian(footer[OffOriginalSize..], OriginalSize);
        BinaryPrimitives.WriteUInt64BigEndian(footer[OffCurrentSize..], CurrentSize);
        BinaryPrimitives.WriteUInt16BigEndian(footer[OffCylinders..], Cylinders);
        footer[OffHeads] = Heads;
        footer[OffSectorsPerTrack] = SectorsPerTrack;
        BinaryPrimitives.WriteUInt32BigEndian(footer[OffDiskType..], DiskType);
        UniqueId.TryWriteBytes(footer.Slice(OffUniqueId, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteUInt32BigEndian(footer[OffChecksum..], VpcFormat.Checksum(footer, OffChecksum));
    }

    private static string Latin1(ReadOnlySpan<byte> bytes) => System.Text.Encoding.Latin1.GetString(bytes);

    private static void WriteLatin1(Span<byte> into, string text) => System.Text.Encoding.Latin1.GetBytes(text.AsSpan(0, Math.Min(text.Length, into.Length)), into);
}
