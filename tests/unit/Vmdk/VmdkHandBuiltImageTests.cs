using System.Buffers.Binary;
using System.Text.Json;
using ExportServer.Block.Core;
using ExportServer.UnitTests.Drivers;
using Xunit;
using static ExportServer.TestFixtures.SeSparseFixture;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Vmdk;

/// <summary>
/// Extents qemu-img cannot make, built byte by byte from their documented layout — seSparse (over a
/// parent, with permuted grain tables, a grain index above 4096, zero and unmapped grains), ESX
/// sparse (COWD) behind a vmfsSparse descriptor, and a vmfs flat extent — read as qemu-img reads them.
/// </summary>
public sealed class VmdkHandBuiltImageTests
{
    private const int Sector = 512;
    private const long Capacity = 64L << 20;

    private static string Open(string path, bool readOnly = true, bool autoReadOnly = false) =>
        $"{{\"driver\": \"vmdk\", \"read-only\": {(readOnly ? "true" : "false")}, \"auto-read-only\": {(autoReadOnly ? "true" : "false")}, " +
        $"\"file\": {{\"driver\": \"file\", \"filename\": {DriverTestBed.Json(path)}}}}}";

    private static void PutGrain(FileStream f, long offset, int size, long grain) => Put(f, offset, Enumerable.Repeat(Pattern(grain), size).ToArray());

    private static void BuildSeSparse(string path) => Build(path, Capacity);

    internal static string Cid(string image)
    {
        using var info = JsonDocument.Parse(Ok("qemu-img", "info", "--output=json", image));
        return info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("cid").GetInt64().ToString("x8");
    }

    internal static async Task<byte[]> ReadAllAsync(BlockNode node)
    {
        var data = new byte[node.Length];
        for (var o = 0; o < data.Length; o += 1 << 20)
        {
            await node.ReadAsync(o, data.AsMemory(o, Math.Min(1 << 20, data.Length - o)));
        }

        return data;
    }

    [Fact]
    public async Task SeSparseOverAParentReadsAsQemuImgReadsIt()
    {
        await using var bed = new DriverTestBed();
        var baseImage = bed.PathOf("base.vmdk");
        Ok("qemu-img", "create", "-f", "vmdk", baseImage, "64M");
        Ok("qemu-io", "-f", "vmdk", "-c", "write -P 0x99 0 64M", baseImage);
        BuildSeSparse(bed.PathOf("delta-sesparse.vmdk"));
        var descriptor = bed.PathOf("delta.vmdk");
        await File.WriteAllTextAsync(descriptor,
            $"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID={Cid(baseImage)}\ncreateType=\"seSparse\"\nparentFileNameHint=\"base.vmdk\"\n\n" +
            $"# Extent description\nRW {Capacity / Sector} SESPARSE \"delta-sesparse.vmdk\"\n");

        var expected = ConvertToRaw(descriptor, bed.Directory);
        var node = await bed.AddAsync(Open(descriptor));
        var ours = await ReadAllAsync(node);
        Assert.Equal(expected.Length, ours.Length);
        Assert.True(expected.AsSpan().SequenceEqual(ours), "seSparse image differs from qemu-img convert");

        // What the layout says, independently of qemu-img.
        Assert.All(ours[..4096], b => Assert.Equal(Pattern(5000), b));
        Assert.All(ours[4096..12288], b => Assert.Equal(0, b));
        Assert.All(ours[12288..16384], b => Assert.Equal(Pattern(1), b));
        Assert.All(ours[16384..20480], b => Assert.Equal(0x99, b));
        Assert.All(ours[(16 << 20)..((16 << 20) + 4096)], b => Assert.Equal(Pattern(7), b));
        Assert.All(ours[(32 << 20)..((32 << 20) + 4096)], b => Assert.Equal(0x99, b));
        Assert.All(ours[^4096..], b => Assert.Equal(Pattern(4096), b));
    }

    [Theory]
    [InlineData(0, 0xcafebabfUL, "Bad const header magic")]
    [InlineData(24, 16UL, "Unsupported grain size: 16")]
    [InlineData(32, 128UL, "Unsupported grain table size: 128")]
    [InlineData(80, 0x100000UL, "volatile_header_offset")]
    [InlineData(512, 0UL, "Bad volatile header magic")]
    [InlineData(536, 1UL, "Replaying journal not supported")]
    [InlineData(136, 0x10000UL, "grain directory of")]
    [InlineData(1024, 0x2000000000000002UL, "seSparse grain directory entry 0")]
    [InlineData(1024, 0x1000000000001000UL, "beyond the end of the file")]
    [InlineData(1032, 0x1000000000000002UL, "overlapping grain tables")]
    public async Task BadSeSparseFieldIsNamed(long offset, ulong value, string message)
    {
        await using var bed = new DriverTestBed();
        var extent = bed.PathOf("d-sesparse.vmdk");
        BuildSeSparse(extent);
        using (var f = new FileStream(extent, FileMode.Open))
        {
            Put64(f, offset, value);
        }

        var descriptor = bed.PathOf("d.vmdk");
        await File.WriteAllTextAsync(descriptor, $"version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"seSparse\"\nRW {Capacity / Sector} SESPARSE \"d-sesparse.vmdk\"\n");
        var e = await bed.AddFailsAsync(Open(descriptor));
        Assert.Contains(message, e.Message);
    }

    /// <summary>
    /// A COWD extent of 8 MiB with 64 KiB grains: header, grain directory at sector 4 naming one
    /// 4096-entry table at sector 5, grains 0 and 3 stored at sectors 64 and 192.
    /// </summary>
    internal static void BuildCowd(string path)
    {
        using var f = new FileStream(path, FileMode.Create);
        var h = new byte[Sector];
        "COWD"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 3);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), 16384);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), 128);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), 4);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(28), 320);
        Put(f, 0, h);
        var entry = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 5);
        Put(f, 4 * Sector, entry);
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 64);
        Put(f, 5 * Sector, entry);
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 192);
        Put(f, (5 * Sector) + 12, entry);
        PutGrain(f, 64 * Sector, 65536, 0);
        PutGrain(f, 192 * Sector, 65536, 3);
    }

    // The extent line follows a comment line: QEMU's parser (sscanf skipping newlines) would also
    // read it a second time from a blank line before it.
    [Theory]
    [InlineData("vmfsSparse", "VMFSSPARSE", "cowd.vmdk")]
    [InlineData("vmfs", "VMFS", "flat.vmdk")]
    [InlineData("twoGbMaxExtentSparse", "SPARSE", "cowd.vmdk")]
    public async Task EsxExtentsReadAsQemuImgReadsThem(string createType, string extentType, string extentFile)
    {
        await using var bed = new DriverTestBed();
        BuildCowd(bed.PathOf("cowd.vmdk"));
        bed.CreateFile("flat.vmdk", 8 << 20, seed: 5);
        var descriptor = bed.PathOf("d.vmdk");
        await File.WriteAllTextAsync(descriptor,
            $"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"{createType}\"\n# Extent description\nRW 16384 {extentType} \"{extentFile}\"\n");
        var expected = ConvertToRaw(descriptor, bed.Directory);
        var ours = await ReadAllAsync(await bed.AddAsync(Open(descriptor)));
        Assert.Equal(8 << 20, ours.Length);
        Assert.True(expected.AsSpan().SequenceEqual(ours), $"{createType} image differs from qemu-img convert");
        if (extentType != "VMFS")
        {
            Assert.All(ours[196608..262144], b => Assert.Equal(Pattern(3), b));
            Assert.All(ours[65536..131072], b => Assert.Equal(0, b));
        }
    }
}
