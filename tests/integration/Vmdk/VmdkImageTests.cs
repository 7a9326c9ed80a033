using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Vmdk.VmdkExport;

namespace ExportServer.IntegrationTests.Vmdk;

/// <summary>
/// vmdk images of every subformat qemu-img makes, read through our NBD export exactly as `qemu-img
/// convert -O raw` reads them; written through our export, they pass `qemu-img check` and hold what
/// the same writes give on a raw copy.
/// </summary>
public sealed class VmdkImageTests
{
    // Within and across 64 KiB grains, unaligned, zeroes over data, across the 2 GiB extent boundary of split images.
    private static readonly string[] Writes =
    [
        "write -P 0x11 0 1M", "write -P 0x22 3146240 100000", "write -z 512K 128K", "write -P 0x33 8M 256K",
        "write -P 0x44 2147418112 131072", "write -P 0x55 2181033984 4096",
    ];

    private const string Size = "2080M";

    /// <summary>Builds the named kind of image in <paramref name="dir"/> with <see cref="Writes"/> and returns its file name.</summary>
    private static async Task<string> MakeAsync(TempDir dir, string kind)
    {
        switch (kind)
        {
            case "streamOptimized":
                await ShAsync(dir, $"qemu-img create -f raw src.raw {Size} && {Io("raw", "src.raw", Writes)}");
                await ShAsync(dir, "qemu-img convert -O vmdk -o subformat=streamOptimized src.raw img.vmdk");
                break;
            case "zeroed-grain":
                await ShAsync(dir, $"qemu-img create -f vmdk -o zeroed_grain=on img.vmdk {Size} && {Io("vmdk", "img.vmdk", [.. Writes, "write -z 0 256K"])}");
                break;
            case "chain":
                await ShAsync(dir, $"qemu-img create -f vmdk base.vmdk {Size} && {Io("vmdk", "base.vmdk", Writes)}");
                await ShAsync(dir, $"mkdir top && qemu-img create -f vmdk -b ../base.vmdk -F vmdk top/img.vmdk && {Io("vmdk", "top/img.vmdk", ["write -P 0x66 512K 1M", "write -P 0x77 1000 5000"])}");
                return dir["top/img.vmdk"];
            case "qcow2-over-vmdk":
                await ShAsync(dir, $"qemu-img create -f vmdk base.vmdk {Size} && {Io("vmdk", "base.vmdk", Writes)}");
                await ShAsync(dir, $"qemu-img create -f qcow2 -b base.vmdk -F vmdk img.qcow2 && {Io("qcow2", "img.qcow2", ["write -P 0x66 512K 1M"])}");
                return dir["img.qcow2"];
            default:
                await ShAsync(dir, $"qemu-img create -f vmdk -o subformat={kind} img.vmdk {Size} && {Io("vmdk", "img.vmdk", Writes)}");
                break;
        }

        return dir["img.vmdk"];
    }

    [Theory]
    [InlineData("monolithicSparse")]
    [InlineData("monolithicFlat")]
    [InlineData("twoGbMaxExtentSparse")]
    [InlineData("twoGbMaxExtentFlat")]
    [InlineData("streamOptimized")]
    [InlineData("zeroed-grain")]
    [InlineData("chain")]
    [InlineData("qcow2-over-vmdk")]
    public async Task ImageReadsAsQemuImgConvertReadsIt(string kind)
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, kind);
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["expected.raw"])).Check("convert");
        await using var d = await StartAsync(dir, image, writable: false, kind == "qcow2-over-vmdk" ? "qcow2" : "vmdk");
        await AssertSameAsRawAsync(dir, dir["expected.raw"]);
    }

    [Theory]
    [InlineData("monolithicSparse")]
    [InlineData("monolithicFlat")]
    [InlineData("twoGbMaxExtentSparse")]
    [InlineData("twoGbMaxExtentFlat")]
    [InlineData("zeroed-grain")]
    [InlineData("chain")]
    public async Task OurWritesPassCheckAndMatchARawCopy(string kind)
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, kind);
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["expected.raw"])).Check("convert");
        string[] more = ["write -P 0xa1 4M 8M", "write -P 0xa2 700000 3000", "write -z 8M 64K", "write -z 4194816 1000", "write -P 0xa3 2147479552 8192"];
        await ShAsync(dir, Io("raw", "expected.raw", more));
        await using (var d = await StartAsync(dir, image, writable: true))
        {
            (await Tool.RunAsync("qemu-io", ["-f", "raw", .. more.SelectMany(c => new[] { "-c", c }), Uri(dir)])).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", dir["expected.raw"], image)).Check("compare");
    }

    [Fact]
    public async Task StreamOptimizedTakesWholeNewGrainsOnly()
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -f vmdk -o subformat=streamOptimized img.vmdk 16M && qemu-img create -f raw expected.raw 16M");
        string[] grains = ["write -P 0x31 0 64K", "write -P 0x32 1M 192K", "write -P 0x33 16711680 64K"];
        await ShAsync(dir, Io("raw", "expected.raw", grains));
        await using (var d = await StartAsync(dir, dir["img.vmdk"], writable: true))
        {
            (await Tool.RunAsync("qemu-io", ["-f", "raw", .. grains.SelectMany(c => new[] { "-c", c }), Uri(dir)])).Check("whole grains");
            var partial = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x34 4M 4096", Uri(dir));
            Assert.Contains("Invalid argument", partial.Stdout + partial.Stderr);
            var again = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x35 0 64K", Uri(dir));
            Assert.Contains("Input/output error", again.Stdout + again.Stderr);
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", dir["img.vmdk"])).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", dir["expected.raw"], dir["img.vmdk"])).Check("compare");
    }

    [Fact]
    public async Task ParentWrittenAfterTheChildWasMadeIsRefusedByCid()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -f vmdk base.vmdk 8M && {Io("vmdk", "base.vmdk", ["write -P 0x11 0 1M"])}");
        await ShAsync(dir, $"qemu-img create -f vmdk -b base.vmdk -F vmdk top.vmdk && {Io("vmdk", "base.vmdk", ["write -P 0x12 0 64K"])}");
        await using var d = await StartAsync(dir, dir["top.vmdk"], writable: false);
        var read = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 0 4096", Uri(dir));
        Assert.Contains("Invalid argument", read.Stdout + read.Stderr);
        Assert.False(d.HasExited);
    }

    [Fact]
    public async Task QueriesShowTheExtentsAsQemuImgInfoDoes()
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -f vmdk -o subformat=twoGbMaxExtentSparse img.vmdk 3G");
        var theirs = JsonNode.Parse((await Tool.RunAsync("qemu-img", "info", "--output=json", dir["img.vmdk"])).Check("info").Stdout)!["format-specific"]!["data"]!;
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["img.vmdk"]},read-only=on",
            "--blockdev", "driver=vmdk,node-name=v0,file=f0,read-only=on",
            "--chardev", $"socket,id=m0,path={dir["qmp.sock"]},server=on,wait=off", "--monitor", "chardev=m0");
        await using var qmp = await QmpClient.ConnectAsync(dir["qmp.sock"]);
        var nodes = (await qmp.ExecuteAsync("query-named-block-nodes")).AsArray();
        var ours = nodes.Single(n => (string?)n!["node-name"] == "v0")!["image"]!["format-specific"]!["data"]!;
        foreach (var key in new[] { "create-type", "cid", "parent-cid" })
        {
            Assert.Equal(theirs[key]!.ToJsonString(), ours[key]!.ToJsonString());
        }

        static IEnumerable<string> Extents(JsonNode data) => data["extents"]!.AsArray().Select(e =>
            $"{Path.GetFileName((string?)e!["filename"])} {e["format"]} {e["virtual-size"]} {e["cluster-size"]}");
        Assert.Equal(Extents(theirs), Extents(ours));
        Assert.Equal(2, Extents(ours).Count());
    }
}
