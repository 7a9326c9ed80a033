using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// Images written by qemu-img/qemu-io read through our NBD export exactly as `qemu-img convert -O raw`
/// reads them, and the export's block status matches `qemu-img map`.
/// </summary>
public sealed class QemuImageCompatTests
{
    // Patterns within and across clusters, unaligned, zeroed clusters over data and partial zeroes.
    private static readonly string[] Writes =
    [
        "write -P 0x11 0 1M", "write -P 0x22 3146240 100000", "write -z 5M 128K", "write -P 0x33 8M 256K",
        "write -z 8454144 64K", "write -z 8M 3000", "write -P 0x44 16773120 8192",
    ];

    private static async Task ShAsync(TempDir dir, string command) =>
        (await Tool.ShAsync($"cd '{dir.Path}' && {command}")).Check(command);

    private static string Io(string image, params string[] commands) =>
        $"qemu-io -f qcow2 {string.Join(' ', commands.Select(c => $"-c '{c}'"))} {image}";

    /// <summary>Builds the named kind of image in <paramref name="dir"/> and returns its file name.</summary>
    private static async Task<string> MakeAsync(TempDir dir, string kind)
    {
        switch (kind)
        {
            case "plain":
                await ShAsync(dir, $"qemu-img create -f qcow2 img.qcow2 32M && {Io("img.qcow2", Writes)}");
                break;
            case "zlib":
            case "zstd":
                await ShAsync(dir, $"qemu-img create -f raw src.raw 32M && qemu-io -f raw {string.Join(' ', Writes.Select(c => $"-c '{c}'"))} src.raw");
                await ShAsync(dir, $"qemu-img convert -c -O qcow2 -o compression_type={kind} src.raw img.qcow2");
                break;
            case "extended-l2":
                await ShAsync(dir, $"qemu-img create -f qcow2 -o extended_l2=on,cluster_size=128K img.qcow2 32M && {Io("img.qcow2", Writes)}");
                break;
            case "data-file":
                await ShAsync(dir, $"qemu-img create -f qcow2 -o data_file={dir["img.data"]} img.qcow2 32M && {Io("img.qcow2", Writes)}");
                break;
            case "chain":
                await ShAsync(dir, $"qemu-img create -f qcow2 base.qcow2 32M && {Io("base.qcow2", Writes)}");
                await ShAsync(dir, $"qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 && {Io("mid.qcow2", "write -P 0x55 512K 1M", "write -z 3M 64K")}");
                await ShAsync(dir, $"mkdir top && qemu-img create -f qcow2 -b ../mid.qcow2 -F qcow2 top/img.qcow2 && {Io("top/img.qcow2", "write -P 0x66 1000 5000", "write -z 8M 128K")}");
                return dir["top/img.qcow2"];
            case "snapshot":
                await ShAsync(dir, $"qemu-img create -f qcow2 img.qcow2 32M && {Io("img.qcow2", Writes)} && qemu-img snapshot -c s1 img.qcow2");
                await ShAsync(dir, Io("img.qcow2", "write -P 0x77 0 2M", "write -z 8M 1M"));
                break;
            default:
                throw new ArgumentException(kind);
        }

        return dir["img.qcow2"];
    }

    [Theory]
    [InlineData("plain")]
    [InlineData("zlib")]
    [InlineData("zstd")]
    [InlineData("extended-l2")]
    [InlineData("data-file")]
    [InlineData("chain")]
    [InlineData("snapshot")]
    public async Task ImageReadsAsQemuImgConvertReadsIt(string kind)
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, kind);
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["expected.raw"])).Check("convert");
        await using var d = await Qcow2Export.StartAsync(dir, image, writable: false);
        await Qcow2Export.AssertSameAsRawAsync(dir, dir["expected.raw"]);
    }

    [Fact]
    public async Task InternalSnapshotIsServedReadOnly()
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, "snapshot");
        (await Tool.RunAsync("qemu-img", "convert", "-l", "snapshot.name=s1", "-O", "raw", image, dir["s1.raw"])).Check("convert");
        await using var d = await Qcow2Export.StartAsync(dir, image, writable: false, "snapshot.name=s1");
        await Qcow2Export.AssertSameAsRawAsync(dir, dir["s1.raw"]);
    }

    [Fact]
    public async Task ChainMapsMatchQemuImgMap()
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, "chain");
        var map = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "map", "--output=json", image)).Check("map").Stdout).RootElement;
        var expectedStatus = await BlockMap.QemuImgAsync(image, "qcow2");
        var expectedDepth = BlockMap.Merge(map.EnumerateArray().Select(e => (
            e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(),
            e.GetProperty("present").GetBoolean() ? e.GetProperty("depth").GetInt32() + 1 : 0)));

        await using var d = await Qcow2Export.StartAsync(dir, image, writable: false);
        Assert.Equal(expectedStatus, await BlockMap.NbdinfoAsync(Qcow2Export.Uri(dir)));
        Assert.Equal(expectedDepth, await BlockMap.NbdinfoAsync(Qcow2Export.Uri(dir), "qemu:allocation-depth"));
        Assert.Contains(expectedDepth, e => e.Value == 3);
        Assert.Contains(expectedDepth, e => e.Value == 0);
    }
}
