using System.Buffers.Binary;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The marker before each compressed grain of a stream-optimized extent: the grain's first sector
/// (lba) and the compressed length. A length of 0 makes it a metadata marker whose type follows.
/// </summary>
internal readonly record struct VmdkGrainMarker(ulong Lba, uint Length)
{
    /// <summary>lba (8) and size (4); compressed data starts right after.</summary>
    public const int Size = 12;

    public static VmdkGrainMarker Read(ReadOnlySpan<byte> b) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Lba);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Length);
    }
}
