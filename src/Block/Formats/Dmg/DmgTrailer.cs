using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Dmg;

/// <summary>
/// The UDIF trailer ("koly", big-endian) at the end of a dmg file: where the data fork, the
/// resource fork and the XML property list lie, and the disk's sector count. <see cref="Read"/>
/// refuses what QEMU's dmg_open refuses.
/// </summary>
internal sealed record DmgTrailer
{
    public const int Size = 512;
    private const int OffDataFork = 0x18;
    private const int OffResourceFork = 0x28;
    private const int OffResourceForkLength = 0x30;
    private const int OffXml = 0xd8;
    private const int OffXmlLength = 0xe0;
    private const int OffSectorCount = 0x1ec;

    /// <summary>Where the trailer starts in the file.</summary>
    public long Offset { get; init; }

    public ulong DataForkOffset { get; init; }

    public ulong ResourceForkOffset { get; init; }

    public ulong ResourceForkLength { get; init; }

    public ulong XmlOffset { get; init; }

    public ulong XmlLength { get; init; }

    public long SectorCount { get; init; }

    /// <summary>
    /// Where "koly" lies in the last 515 bytes of a file of <paramref name="fileLength"/> whose tail is
    /// <paramref name="tail"/> (QEMU's dmg_find_koly_offset: a dmg may have an odd size), or -1.
    /// </summary>
    public static long Find(ReadOnlySpan<byte> tail, long fileLength)
    {
        var i = tail.IndexOf("koly"u8);
        return i < 0 ? -1 : fileLength - tail.Length + i;
    }

    /// <summary>The fields of the trailer at <paramref name="offset"/>; <paramref name="t"/> holds its 512 bytes (zeroes past the end of the file).</summary>
    public static DmgTrailer Read(ReadOnlySpan<byte> t, long offset)
    {
        var trailer = new DmgTrailer
        {
            Offset = offset,
            DataForkOffset = BinaryPrimitives.ReadUInt64BigEndian(t[OffDataFork..]),
            ResourceForkOffset = BinaryPrimitives.ReadUInt64BigEndian(t[OffResourceFork..]),
            ResourceForkLength = BinaryPrimitives.ReadUInt64BigEndian(t[OffResourceForkLength..]),
            XmlOffset = BinaryPrimitives.ReadUInt64BigEndian(t[OffXml..]),
            XmlLength = BinaryPrimitives.ReadUInt64BigEndian(t[OffXmlLength..]),
            SectorCount = (long)BinaryPrimitives.ReadUInt64BigEndian(t[OffSectorCount..]),
        };
        var end = (ulong)offset;
        var problem = trailer.DataForkOffset > end ? $"data fork offset 0x{trailer.DataForkOffset:x} lies beyond the trailer"
            : trailer.ResourceForkOffset >= end || trailer.ResourceForkLength > end - trailer.ResourceForkOffset
                ? $"resource fork (offset 0x{trailer.ResourceForkOffset:x}, length {trailer.ResourceForkLength}) does not lie before the trailer"
            : trailer.XmlOffset >= end || trailer.XmlLength > end - trailer.XmlOffset
                ? $"property list (offset 0x{trailer.XmlOffset:x}, length {trailer.XmlLength}) does not lie before the trailer"
            : trailer.SectorCount < 0 ? $"sector count 0x{(ulong)trailer.SectorCount:x} is negative"
            : trailer.ResourceForkLength == 0 && trailer.XmlLength == 0 ? "it has neither a resource fork nor a property list"
            : null;
        return problem is null ? trailer : throw BlockException.Invalid($"dmg: invalid UDIF trailer: {problem}");
    }
}
