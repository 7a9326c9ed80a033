using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// dmg, which QEMU only reads: fixtures built by a script read as qemu-img reads them and equal the
/// disk they were made from (bzip2 chunks against the disk alone: this qemu-img has no dmg-bz2
/// module); chunk types we cannot decode and hostile tables give clear errors, the daemon stays up.
/// </summary>
public sealed class DmgTests
{
    private static readonly string[] Mixed = ["zlib:100", "raw:37", "zero:2000", "zlib:1", "raw:5", "zlib:300", "ignore:3", "zlib:128", "zero:10"];

    [Theory]
    [InlineData("xml")]
    [InlineData("rsrc")]
    public async Task ReadsAsQemuImgReadsAndAsTheSource(string table)
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["img.dmg"], dir["src.raw"], table, 1, Mixed);
        await ShAsync(dir, "qemu-img convert -f dmg -O raw img.dmg expected.raw 2>/dev/null");
        await AssertSameAsync(dir["src.raw"], dir["expected.raw"]);
        await using var d = await ServeAsync(dir, "dmg", dir["img.dmg"], writable: false);
        Assert.Equal(await VirtualSizeAsync(dir["img.dmg"], "dmg"), await ExportSizeAsync(Uri(dir)));
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
        (await Tool.ShAsync($"qemu-io -r -f raw -c 'read -v 51712 1024' '{Uri(dir)}' | head -3")).Check("read across chunks");
    }

    /// <summary>bzip2 chunks (through libbz2) next to the others equal the disk they were made from.</summary>
    [Fact]
    public async Task Bzip2ChunksReadAsTheSource()
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["img.dmg"], dir["src.raw"], "xml", 2, "bzip2:200", "zlib:50", "bzip2:1", "zero:64", "raw:9", "bzip2:2048");
        await using var d = await ServeAsync(dir, "dmg", dir["img.dmg"], writable: false);
        await AssertSameAsync(dir["src.raw"], Uri(dir));
    }

    /// <summary>serve probes a .dmg by its name and serves it read-only; a qcow2 overlay over it takes writes.</summary>
    [Fact]
    public async Task ServedByNameAndUnderAnOverlay()
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["base.dmg"], dir["src.raw"], "xml", 3, Mixed);
        await using (var d = await Daemon.StartAsync(dir, "serve", dir["base.dmg"], "--socket", dir["nbd.sock"], "--name", "disk", "--read-only"))
        {
            await AssertSameAsync(dir["src.raw"], Uri(dir));
        }

        await ShAsync(dir, "qemu-img create -q -f qcow2 -b base.dmg -F dmg top.qcow2 2>/dev/null");
        await using (var d = await ServeAsync(dir, "qcow2", dir["top.qcow2"], writable: true))
        {
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x99 64K 64K"]))).Check("write");
        }

        await ShAsync(dir, Io("raw", "src.raw", ["write -P 0x99 64K 64K"]));
        await AssertSameAsync(dir["src.raw"], dir["top.qcow2"], "qcow2");
    }

    [Fact]
    public async Task ReadWriteOpenIsRefusedAsQemuRefusesIt()
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["img.dmg"], dir["src.raw"], "xml", 4, "zlib:8");
        await OpenErrors.AssertSameAsQsdAsync("dmg", dir["img.dmg"], readOnly: false);
    }

    /// <summary>ADC and lzfse chunks: the image opens, the other chunks read, a read of one of those fails with an error naming its type.</summary>
    [Theory]
    [InlineData("adc", "ADC-compressed")]
    [InlineData("lzfse", "lzfse-compressed")]
    public async Task UnsupportedChunkTypesAreNamed(string type, string name)
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["img.dmg"], dir["src.raw"], "xml", 5, "zlib:16", $"{type}:16", "raw:16");
        await using var d = await Daemon.StartAsync(dir, "-T", "nbd",
            "--blockdev", $"driver=dmg,node-name=n0,read-only=on,file.driver=file,file.filename={dir["img.dmg"]},file.read-only=on",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");
        (await Tool.ShAsync($"qemu-io -r -f raw -c 'read 0 8K' -c 'read 16K 8K' '{Uri(dir)}'")).Check("other chunks");
        var failed = await Tool.ShAsync($"qemu-io -r -f raw -c 'read 8K 4K' '{Uri(dir)}'");
        Assert.Contains("Input/output error", failed.Stdout + failed.Stderr);
        Assert.Contains($"chunk 1 of '{dir["img.dmg"]}' is {name}, which is not supported", d.Stderr);
        (await Tool.ShAsync($"qemu-io -r -f raw -c 'read 0 8K' '{Uri(dir)}'")).Check("still serving");
    }

    /// <summary>Hostile trailers and tables: a clear error, no allocation of what they claim.</summary>
    [Theory]
    [InlineData("sectors", "sector count 16777216 for chunk 0 is larger than max (131072)")]
    [InlineData("length", "length 1099511627776 for chunk 0 is larger than max (67108864)")]
    [InlineData("xml", "property list (offset 0x")]
    [InlineData("koly", "Could not locate UDIF trailer in dmg file")]
    public async Task HostileTablesGiveClearErrors(string damage, string message)
    {
        using var dir = new TempDir();
        await DmgImages.WriteAsync(dir, dir["img.dmg"], dir["src.raw"], "rsrc", 6, "zlib:16", "raw:16");
        var image = dir["img.dmg"];
        var bytes = File.ReadAllBytes(image);
        var koly = bytes.Length - 512;
        var rsrc = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(koly + 0x28));
        var firstRow = rsrc + 256 + 4 + 204;
        switch (damage)
        {
            case "sectors":
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(firstRow + 0x10), 1UL << 24);
                break;
            case "length":
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(firstRow + 0x20), 1UL << 40);
                break;
            case "xml":
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(koly + 0xe0), 1UL << 62);
                break;
            default:
                bytes[koly] = (byte)'c';
                break;
        }

        File.WriteAllBytes(image, bytes);
        var r = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--blockdev", $"driver=dmg,node-name=n0,read-only=on,file.driver=file,file.filename={image},file.read-only=on"], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(message, r.Stderr);
    }
}
