using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Parallels;

/// <summary>
/// The 64-byte Parallels header (little-endian): magic, version, geometry, sectors per cluster
/// ("tracks"), BAT entries, disk sectors, the inuse mark, where the data starts, flags and the
/// format extension's offset. <see cref="Read"/> refuses what QEMU's parallels_open refuses, in its words.
/// </summary>
internal sealed record ParallelsHeader
{
    private const int OffMagic = 0;
    private const int OffVersion = 16;
    private const int OffHeads = 20;
    private const int OffCylinders = 24;
    private const int OffTracks = 28;
    private const int OffBatEntries = 32;
    private const int OffSectors = 36;
    private const int OffInUse = 44;
    private const int OffDataOffset = 48;
    private const int OffFlags = 52;
    private const int OffExtension = 56;

    /// <summary>True for "WithouFreSpacExt": BAT entries in clusters, a 64-bit sector count.</summary>
    public bool Extended { get; init; } = true;

    public uint Heads { get; init; } = ParallelsFormat.Heads;

    public uint Cylinders { get; init; }

    /// <summary>Sectors per cluster.</summary>
    public uint Tracks { get; init; }

    public uint BatEntries { get; init; }

    /// <summary>The disk size in sectors (its low 32 bits only under the old magic).</summary>
    public ulong Sectors { get; init; }

    public uint InUse { get; set; }

    /// <summary>The first sector of the data area (0: right after the BAT).</summary>
    public uint DataOffset { get; init; }

    public uint Flags { get; init; }

    /// <summary>The sector of the format extension (dirty bitmaps), 0 for none.</summary>
    public ulong ExtensionOffset { get; set; }

    public long ClusterSize => (long)Tracks * ParallelsFormat.SectorSize;

    /// <summary>Sectors per unit of a BAT entry: a cluster under the new magic, a sector under the old.</summary>
    public uint OffsetMultiplier => Extended ? Tracks : 1;

    public static ParallelsHeader Read(ReadOnlySpan<byte> h)
    {
        var version = BinaryPrimitives.ReadUInt32LittleEndian(h[OffVersion..]);
        var magic = h[..16];
        var extended = magic.SequenceEqual(ParallelsFormat.MagicExt);
        if (version != ParallelsFormat.Version || !(extended || magic.SequenceEqual(ParallelsFormat.Magic)))
        {
            throw BlockException.Invalid("Image not in Parallels format");
        }

        var tracks = BinaryPrimitives.ReadUInt32LittleEndian(h[OffTracks..]);
        if (tracks == 0)
        {
            throw BlockException.Invalid("Invalid image: Zero sectors per track");
        }

        if (tracks > ParallelsFormat.MaxTracks)
        {
            throw new BlockException(Errno.EFBIG, "Invalid image: Too big cluster");
        }

        var entries = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBatEntries..]);
        if (entries > ParallelsFormat.MaxBatEntries)
        {
            throw new BlockException(Errno.EFBIG, "Catalog too large");
        }

        var sectors = BinaryPrimitives.ReadUInt64LittleEndian(h[OffSectors..]);
        return new ParallelsHeader
        {
            Extended = extended,
            Heads = BinaryPrimitives.ReadUInt32LittleEndian(h[OffHeads..]),
            Cylinders = BinaryPrimitives.ReadUInt32LittleEndian(h[OffCylinders..]),
            Tracks = tracks,
            BatEntries = entries,
            Sectors = extended ? sectors : sectors & 0xffffffff,
            InUse = BinaryPrimitives.ReadUInt32LittleEndian(h[OffInUse..]),
            DataOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[OffDataOffset..]),
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(h[OffFlags..]),
            ExtensionOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[OffExtension..]),
        };
    }

    /// <summary>Encodes the header into the first 64 bytes of <paramref name="bytes"/>.</summary>
    public void Write(Span<byte> bytes)
    {
        var h = bytes[..ParallelsFormat.HeaderSize];
        h.Clear();
        (Extended ? ParallelsFormat.MagicExt : ParallelsFormat.Magic).CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffVersion..], ParallelsFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffHeads..], Heads);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffCylinders..], Cylinders);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffTracks..], Tracks);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBatEntries..], BatEntries);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffSectors..], Sectors);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffInUse..], InUse);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffDataOffset..], DataOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffFlags..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffExtension..], ExtensionOffset);
    }
}
