using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The header of an ESX sparse extent (VMDK3, magic "COWD"): capacity, grain size and the grain
/// directory, in sectors. Its grain tables have a fixed 4096 entries.
/// </summary>
internal sealed record VmdkCowdHeader
{
    public const int Size = 44;

    private const int OffVersion = 4;
    private const int OffFlags = 8;
    private const int OffDiskSectors = 12;
    private const int OffGranularity = 16;
    private const int OffGrainDirectoryOffset = 20;
    private const int OffGrainDirectoryEntries = 24;
    private const int OffFileSectors = 28;

    public uint Version { get; init; } = 1;

    public uint Flags { get; init; }

    public uint DiskSectors { get; init; }

    public uint Granularity { get; init; }

    public uint GrainDirectoryOffset { get; init; }

    public uint GrainDirectoryEntries { get; init; }

    public uint FileSectors { get; init; }

    public static VmdkCowdHeader Read(ReadOnlySpan<byte> b, string fileName)
    {
        if (b.Length < Size)
        {
            throw BlockException.Invalid($"vmdk: COWD header of '{fileName}' truncated ({b.Length} of {Size} bytes)");
        }

        var h = new VmdkCowdHeader
        {
            Version = BinaryPrimitives.ReadUInt32LittleEndian(b[OffVersion..]),
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(b[OffFlags..]),
            DiskSectors = BinaryPrimitives.ReadUInt32LittleEndian(b[OffDiskSectors..]),
            Granularity = BinaryPrimitives.ReadUInt32LittleEndian(b[OffGranularity..]),
            GrainDirectoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(b[OffGrainDirectoryOffset..]),
            GrainDirectoryEntries = BinaryPrimitives.ReadUInt32LittleEndian(b[OffGrainDirectoryEntries..]),
            FileSectors = BinaryPrimitives.ReadUInt32LittleEndian(b[OffFileSectors..]),
        };
        if (h.Granularity == 0)
        {
            throw BlockException.Invalid($"L1 entry size is invalid (granularity 0 in '{fileName}')");
        }

        if (h.Granularity > VmdkFormat.MaxGrainSectors)
        {
            throw new BlockException(Errno.EFBIG, $"Invalid granularity, image may be corrupt (granularity {h.Granularity} sectors in '{fileName}')");
        }

        var span = (long)h.Granularity * VmdkFormat.CowdGrainTableEntries;
        if (h.GrainDirectoryEntries < (h.DiskSectors + span - 1) / span)
        {
            throw BlockException.Invalid($"vmdk: COWD l1dir_size {h.GrainDirectoryEntries} in '{fileName}' does not cover disk_sectors {h.DiskSectors}");
        }

        return h;
    }
}
