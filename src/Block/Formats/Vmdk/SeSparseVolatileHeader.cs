using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The volatile header of a seSparse extent: its magic, the next free grain table number (tables
/// are handed out in order from the grain tables area) and whether a journal waits to be replayed.
/// </summary>
internal sealed record SeSparseVolatileHeader
{
    public const int Size = 512;
    public const ulong Magic = 0xcafecafe;

    private const int OffMagic = 0;
    private const int OffFreeGrainTableNumber = 8;
    private const int OffNextTransaction = 16;
    private const int OffReplayJournal = 24;
    private const int OffPad = 32;

    public ulong FreeGrainTableNumber { get; init; }

    public ulong NextTransaction { get; init; }

    public static SeSparseVolatileHeader Read(ReadOnlySpan<byte> b, string fileName)
    {
        if (b.Length < Size)
        {
            throw BlockException.Invalid($"vmdk: seSparse volatile header of '{fileName}' truncated ({b.Length} of {Size} bytes)");
        }

        var magic = BinaryPrimitives.ReadUInt64LittleEndian(b[OffMagic..]);
        if (magic != Magic)
        {
            throw BlockException.Invalid($"Bad volatile header magic: 0x{magic:x16}");
        }

        if (BinaryPrimitives.ReadUInt64LittleEndian(b[OffReplayJournal..]) != 0)
        {
            throw BlockException.NotSupported("Image is dirty, Replaying journal not supported");
        }

        if (b[OffPad..Size].ContainsAnyExcept((byte)0))
        {
            throw BlockException.NotSupported("Unsupported non-zero volatile header padding");
        }

        return new SeSparseVolatileHeader
        {
            FreeGrainTableNumber = BinaryPrimitives.ReadUInt64LittleEndian(b[OffFreeGrainTableNumber..]),
            NextTransaction = BinaryPrimitives.ReadUInt64LittleEndian(b[OffNextTransaction..]),
        };
    }

    /// <summary>The whole header, with no journal to replay (we write none).</summary>
    public void Write(Span<byte> b)
    {
        b[..Size].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffMagic..], Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffFreeGrainTableNumber..], FreeGrainTableNumber);
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffNextTransaction..], NextTransaction);
    }
}
