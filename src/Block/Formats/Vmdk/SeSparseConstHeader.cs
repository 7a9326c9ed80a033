using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The constant header of a seSparse extent (the first sector): capacity, grain and grain table
/// sizes, and where the volatile header, grain directory, grain tables and grains lie, all in
/// sectors. Checked as strictly as QEMU checks it, since the format is not officially documented.
/// </summary>
internal sealed record SeSparseConstHeader
{
    public const int Size = 512;
    public const ulong Magic = 0xcafebabe;
    public const ulong SupportedVersion = 0x0000000200000001;

    private const int OffMagic = 0;
    private const int OffVersion = 8;
    private const int OffCapacity = 16;
    private const int OffGrainSize = 24;
    private const int OffGrainTableSize = 32;
    private const int OffFlags = 40;
    private const int OffReserved = 48;
    private const int OffVolatileHeaderOffset = 80;
    private const int OffGrainDirectoryOffset = 128;
    private const int OffGrainDirectorySize = 136;
    private const int OffGrainTablesOffset = 144;
    private const int OffGrainTablesSize = 152;
    private const int OffGrainsOffset = 192;
    private const int OffGrainsSize = 200;
    private const int OffPad = 208;

    public ulong Capacity { get; init; }

    /// <summary>Sectors per grain (8: 4 KiB grains).</summary>
    public ulong GrainSize { get; init; }

    /// <summary>Sectors per grain table (64: 4096 entries of 8 bytes).</summary>
    public ulong GrainTableSize { get; init; }

    public ulong VolatileHeaderOffset { get; init; }

    public ulong GrainDirectoryOffset { get; init; }

    public ulong GrainDirectorySize { get; init; }

    public ulong GrainTablesOffset { get; init; }

    public ulong GrainTablesSize { get; init; }

    public ulong GrainsOffset { get; init; }

    public ulong GrainsSize { get; init; }

    private static ulong U64(ReadOnlySpan<byte> b, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(b[offset..]);

    public static SeSparseConstHeader Read(ReadOnlySpan<byte> b, string fileName)
    {
        if (b.Length < Size)
        {
            throw BlockException.Invalid($"vmdk: seSparse const header of '{fileName}' truncated ({b.Length} of {Size} bytes)");
        }

        if (U64(b, OffMagic) != Magic)
        {
            throw BlockException.Invalid($"Bad const header magic: 0x{U64(b, OffMagic):x16}");
        }

        if (U64(b, OffVersion) != SupportedVersion)
        {
            throw BlockException.NotSupported($"Unsupported version: 0x{U64(b, OffVersion):x16}");
        }

        if (U64(b, OffGrainSize) != 8)
        {
            throw BlockException.NotSupported($"Unsupported grain size: {U64(b, OffGrainSize)}");
        }

        if (U64(b, OffGrainTableSize) != 64)
        {
            throw BlockException.NotSupported($"Unsupported grain table size: {U64(b, OffGrainTableSize)}");
        }

        if (U64(b, OffFlags) != 0)
        {
            throw BlockException.NotSupported($"Unsupported flags: 0x{U64(b, OffFlags):x16}");
        }

        if (U64(b, OffReserved) != 0 || U64(b, OffReserved + 8) != 0 || U64(b, OffReserved + 16) != 0 || U64(b, OffReserved + 24) != 0)
        {
            throw BlockException.NotSupported(
                $"Unsupported reserved bits: 0x{U64(b, OffReserved):x16} 0x{U64(b, OffReserved + 8):x16} 0x{U64(b, OffReserved + 16):x16} 0x{U64(b, OffReserved + 24):x16}");
        }

        if (b[OffPad..Size].ContainsAnyExcept((byte)0))
        {
            throw BlockException.NotSupported("Unsupported non-zero const header padding");
        }

        return new SeSparseConstHeader
        {
            Capacity = U64(b, OffCapacity),
            GrainSize = U64(b, OffGrainSize),
            GrainTableSize = U64(b, OffGrainTableSize),
            VolatileHeaderOffset = U64(b, OffVolatileHeaderOffset),
            GrainDirectoryOffset = U64(b, OffGrainDirectoryOffset),
            GrainDirectorySize = U64(b, OffGrainDirectorySize),
            GrainTablesOffset = U64(b, OffGrainTablesOffset),
            GrainTablesSize = U64(b, OffGrainTablesSize),
            GrainsOffset = U64(b, OffGrainsOffset),
            GrainsSize = U64(b, OffGrainsSize),
        };
    }
}
