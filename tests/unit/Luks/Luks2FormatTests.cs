using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Luks;
using Xunit;

namespace ExportServer.UnitTests.Luks;

/// <summary>The LUKS2 structures over byte fixtures: the binary header, its checksum, the JSON metadata and its bounds, the sector IVs.</summary>
public sealed class Luks2FormatTests
{
    private const long FileLength = 48 << 20;

    /// <summary>A 16 KiB primary header area: magic, version 2 (offset 6), area size (8), sequence (16), "sha256" (72), own offset (256).</summary>
    private static byte[] Area(string json, long offset = 0, bool secondary = false)
    {
        var area = new byte[0x4000];
        (secondary ? "SKUL"u8 : "LUKS"u8).CopyTo(area);
        area[4] = 0xba;
        area[5] = 0xbe;
        BinaryPrimitives.WriteUInt16BigEndian(area.AsSpan(6), 2);
        BinaryPrimitives.WriteUInt64BigEndian(area.AsSpan(8), 0x4000);
        BinaryPrimitives.WriteUInt64BigEndian(area.AsSpan(16), 7);
        "sha256"u8.CopyTo(area.AsSpan(72));
        BinaryPrimitives.WriteUInt64BigEndian(area.AsSpan(256), (ulong)offset);
        Encoding.ASCII.GetBytes(json).CopyTo(area, 4096);
        SHA256.HashData(area).CopyTo(area, 448);
        return area;
    }

    private const string Salt = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    /// <summary>cryptsetup's layout for a 16 KiB header: one pbkdf2 key slot, one dynamic segment, one digest.</summary>
    private static string Json(string kdf = $$"""{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"{{Salt}}"}""", string areaOffset = "32768", string segmentOffset = "16777216") =>
        $$$"""
        {"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},
        "area":{"type":"raw","offset":"{{{areaOffset}}}","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{{{kdf}}}}},
        "tokens":{},
        "segments":{"0":{"type":"crypt","offset":"{{{segmentOffset}}}","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096}},
        "digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"{{{Salt}}}","digest":"{{{Salt}}}"}},
        "config":{"json_size":"12288","keyslots_size":"16744448"}}
        """;

    private static Luks2Metadata Metadata(string json) => Luks2Metadata.Read(Area(json).AsSpan(4096), 0x4000, FileLength);

    private static string Refusal(Action action) => Assert.Throws<BlockException>(action).Message;

    [Fact]
    public void BinaryHeaderIsReadAndItsChecksumChecked()
    {
        var area = Area(Json());
        var header = Luks2BinaryHeader.Read(area, 0, secondary: false);
        Assert.Equal(0x4000, header.AreaSize);
        Assert.Equal(7UL, header.Sequence);
        header.VerifyChecksum(area);
        area[5000] ^= 1;
        Assert.Equal("checksum mismatch", Refusal(() => header.VerifyChecksum(area)));
    }

    [Fact]
    public void BinaryHeaderIsRefusedAtTheWrongPlaceOrSize()
    {
        Assert.Equal("header offset field 0x0 differs from its place 0x4000", Refusal(() => Luks2BinaryHeader.Read(Area(Json(), 0, secondary: true), 0x4000, secondary: true)));
        Assert.Equal(Luks2BinaryHeader.NoMagic, Refusal(() => Luks2BinaryHeader.Read(Area(Json()), 0x4000, secondary: true)));
        var secondary = Area(Json(), 0x8000, secondary: true);
        Assert.Equal("header size 0x4000 does not match its offset 0x8000", Refusal(() => Luks2BinaryHeader.Read(secondary, 0x8000, secondary: true)));
        var odd = Area(Json());
        BinaryPrimitives.WriteUInt64BigEndian(odd.AsSpan(8), 0x5000);
        Assert.Equal("header size 0x5000 is not a power of two from 16 KiB to 4 MiB", Refusal(() => Luks2BinaryHeader.Read(odd, 0, secondary: false)));
        Assert.True(Luks2BinaryHeader.IsLuks2(Area(Json())));
    }

    [Fact]
    public void MetadataIsParsed()
    {
        var m = Metadata(Json());
        var slot = Assert.Single(m.Keyslots);
        Assert.Equal((0, 64, 32768L, 258048L, "aes-xts-plain64", 4000), (slot.Id, slot.KeySize, slot.AreaOffset, slot.AreaSize, slot.AreaEncryption, slot.Stripes));
        Assert.Equal(("pbkdf2", "sha256", 1000L), (slot.Kdf.Type, slot.Kdf.HashName, slot.Kdf.Iterations));
        var segment = Assert.Single(m.Segments);
        Assert.Equal((16777216L, (long?)null, 4096), (segment.Offset, segment.Size, segment.SectorSize));
        Assert.Single(m.Digests);
        Assert.Empty(m.Requirements);
    }

    [Fact]
    public void DamagedMetadataIsRefusedNamingTheField()
    {
        Assert.Equal("LUKS2 metadata: the JSON text is not terminated within its area",
            Refusal(() => Luks2Metadata.Read(Enumerable.Repeat((byte)' ', 12288).ToArray(), 0x4000, FileLength)));
        Assert.StartsWith("LUKS2 metadata: JSON syntax error", Refusal(() => Metadata("{\"keyslots\":")));
        Assert.StartsWith("LUKS2 metadata: JSON syntax error", Refusal(() => Metadata(new string('[', 5000) + new string(']', 5000))));
        Assert.Equal("LUKS2 metadata: metadata.config is missing", Refusal(() => Metadata("{}")));
        Assert.Equal("LUKS2 metadata: metadata.keyslots.0.area [0x1000000, +0x3f000) lies outside the key slots area [0x8000, 0x1000000)",
            Refusal(() => Metadata(Json(areaOffset: "16777216"))));
        Assert.Equal("LUKS2 metadata: metadata.keyslots.0.area.offset '-5' is not a decimal size", Refusal(() => Metadata(Json(areaOffset: "-5"))));
        Assert.Equal("LUKS2 metadata: metadata.segments.0 at offset 0x8000 overlaps the metadata (up to 0x1000000) or lies beyond the end of the file (0x3000000)",
            Refusal(() => Metadata(Json(segmentOffset: "32768"))));
        Assert.Equal("LUKS2 metadata: metadata.keyslots has a member 'x' that is not a number from 0 to 31",
            Refusal(() => Metadata(Json().Replace("\"keyslots\":{\"0\"", "\"keyslots\":{\"x\"", StringComparison.Ordinal))));
        Assert.Equal("LUKS2 metadata: metadata.config.keyslots_size 0x3ff8000 from 0x8000 runs beyond the end of the file (0x3000000)",
            Refusal(() => Metadata(Json().Replace("16744448", "67076096", StringComparison.Ordinal))));
    }

    [Theory]
    [InlineData("\"time\":4,\"memory\":999999999,\"cpus\":1", "metadata.keyslots.0.kdf.memory 999999999 is out of range (8 to 4194304)")]
    [InlineData("\"time\":4,\"memory\":64,\"cpus\":16", "metadata.keyslots.0.kdf memory 64 KiB is less than 8 KiB for each of its 16 lanes")]
    [InlineData("\"time\":2000000,\"memory\":1048576,\"cpus\":4", "metadata.keyslots.0.kdf time cost 2000000 with memory 1048576 KiB exceeds the work limit of 1073741824 KiB")]
    [InlineData("\"time\":0,\"memory\":1024,\"cpus\":1", "metadata.keyslots.0.kdf.time 0 is out of range (1 to 4294967295)")]
    [InlineData("\"memory\":1024,\"cpus\":1", "metadata.keyslots.0.kdf.time is missing")]
    public void Argon2CostsAreBoundedBeforeAnythingIsAllocated(string costs, string message)
    {
        var kdf = $$"""{"type":"argon2id",{{costs}},"salt":"{{Salt}}"}""";
        Assert.Equal("LUKS2 metadata: " + message, Refusal(() => Metadata(Json(kdf))));
    }

    [Fact]
    public void Argon2DerivesThroughLibargon2()
    {
        var kdf = new Luks2Kdf("argon2id", null, 2, 64, 2, new byte[Luks2Kdf.SaltLength]);
        var a = new byte[32];
        var b = new byte[32];
        kdf.Derive("passphrase"u8, a);
        kdf.Derive("passphrase"u8, b);
        Assert.Equal(a, b);
        Assert.NotEqual(new byte[32], a);
        (kdf with { Type = "argon2i" }).Derive("passphrase"u8, b);
        Assert.NotEqual(a, b);
        (kdf with { Cpus = 1 }).Derive("passphrase"u8, b);
        Assert.NotEqual(a, b);
    }

    /// <summary>
    /// dm-crypt counts IVs in 512-byte units: the first 512 bytes of 4096-byte sector 1 are encrypted as
    /// 512-byte sector 8 is (same tweak, same block positions), and unlike 512-byte sector 1.
    /// </summary>
    [Fact]
    public void LargeSectorsCountIvsIn512ByteUnits()
    {
        var spec = LuksCipherSpec.FromLuks2("aes-xts-plain64", 64);
        var key = RandomNumberGenerator.GetBytes(64);
        var data = RandomNumberGenerator.GetBytes(8192);
        var large = data.ToArray();
        using (var cipher = new LuksSectorCipher(spec, key, 4096))
        {
            cipher.Encrypt(0, large);
        }

        var small = data.AsSpan(4096, 512).ToArray();
        var other = small.ToArray();
        using (var cipher = new LuksSectorCipher(spec, key))
        {
            cipher.Encrypt(8, small);
            cipher.Encrypt(1, other);
        }

        Assert.Equal(small, large.AsSpan(4096, 512).ToArray());
        Assert.NotEqual(other, large.AsSpan(4096, 512).ToArray());
    }
}
