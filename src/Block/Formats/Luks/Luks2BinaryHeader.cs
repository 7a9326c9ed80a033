using System.Buffers.Binary;
using System.Security.Cryptography;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The 4096-byte binary part of a LUKS2 header (big-endian), written twice: the primary at offset 0
/// ("LUKS\xba\xbe") and the secondary right after the primary's area ("SKUL\xba\xbe"). Each names its
/// own offset, the size of its area (binary part and JSON text) and the checksum of that area.
/// </summary>
internal sealed record Luks2BinaryHeader
{
    public const int Length = 4096;
    public const long MinAreaSize = 0x4000;
    public const long MaxAreaSize = 0x400000;

    /// <summary>Why a place holds no header at all (rather than a damaged one).</summary>
    public const string NoMagic = "no LUKS2 magic";

    /// <summary>Where a secondary header may lie when the primary cannot say (cryptsetup's LUKS2_HDR2_OFFSETS): each allowed area size.</summary>
    public static readonly long[] SecondaryOffsets = [0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000];

    private const int OffVersion = 6;
    private const int OffAreaSize = 8;
    private const int OffSequence = 16;
    private const int OffChecksumAlg = 72;
    private const int ChecksumAlgLength = 32;
    private const int OffUuid = 168;
    private const int UuidLength = 40;
    private const int OffHeaderOffset = 256;
    private const int OffChecksum = 448;
    private const int ChecksumLength = 64;

    private static ReadOnlySpan<byte> SecondaryMagic => [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe];

    /// <summary>The binary part and the JSON area together.</summary>
    public required long AreaSize { get; init; }

    public required ulong Sequence { get; init; }

    public required string ChecksumAlg { get; init; }

    public required string Uuid { get; init; }

    public static bool IsLuks2(ReadOnlySpan<byte> head) =>
        head.Length >= 8 && head[..6].SequenceEqual(LuksFormat.Magic) && BinaryPrimitives.ReadUInt16BigEndian(head[OffVersion..]) == 2;

    /// <summary>
    /// Decodes the binary part found at <paramref name="offset"/> and checks what can be checked before
    /// the JSON area is read (cryptsetup's hdr_disk_sanity_check_pre): magic, version, offset, area size.
    /// </summary>
    public static Luks2BinaryHeader Read(ReadOnlySpan<byte> b, long offset, bool secondary)
    {
        if (b.Length < Length || !b[..6].SequenceEqual(secondary ? SecondaryMagic : LuksFormat.Magic))
        {
            throw BlockException.Invalid(NoMagic);
        }

        var version = BinaryPrimitives.ReadUInt16BigEndian(b[OffVersion..]);
        if (version != 2)
        {
            throw BlockException.Invalid($"version {version} is not 2");
        }

        var ownOffset = BinaryPrimitives.ReadUInt64BigEndian(b[OffHeaderOffset..]);
        if (ownOffset != (ulong)offset)
        {
            throw BlockException.Invalid($"header offset field 0x{ownOffset:x} differs from its place 0x{offset:x}");
        }

        var areaSize = BinaryPrimitives.ReadUInt64BigEndian(b[OffAreaSize..]);
        if (areaSize is < MinAreaSize or > MaxAreaSize || (areaSize & (areaSize - 1)) != 0)
        {
            throw BlockException.Invalid($"header size 0x{areaSize:x} is not a power of two from 16 KiB to 4 MiB");
        }

        if (secondary && (long)areaSize != offset)
        {
            throw BlockException.Invalid($"header size 0x{areaSize:x} does not match its offset 0x{offset:x}");
        }

        return new Luks2BinaryHeader
        {
            AreaSize = (long)areaSize,
            Sequence = BinaryPrimitives.ReadUInt64BigEndian(b[OffSequence..]),
            ChecksumAlg = LuksHeader.Text(b.Slice(OffChecksumAlg, ChecksumAlgLength)),
            Uuid = LuksHeader.Text(b.Slice(OffUuid, UuidLength)),
        };
    }

    /// <summary>Checks the stored checksum of <paramref name="area"/> (binary part and JSON area) computed with the checksum field zeroed.</summary>
    public void VerifyChecksum(ReadOnlySpan<byte> area)
    {
        var hash = LuksHash.TryParse(ChecksumAlg)
            ?? throw BlockException.Invalid($"checksum algorithm '{Luks2Json.Shorten(ChecksumAlg)}' is not supported");
        using var h = IncrementalHash.CreateHash(hash.Algorithm);
        h.AppendData(area[..OffChecksum]);
        h.AppendData(new byte[ChecksumLength]);
        h.AppendData(area[(OffChecksum + ChecksumLength)..]);
        Span<byte> digest = stackalloc byte[64];
        var n = h.GetHashAndReset(digest);
        if (!digest[..n].SequenceEqual(area.Slice(OffChecksum, n)))
        {
            throw BlockException.Invalid("checksum mismatch");
        }
    }
}
