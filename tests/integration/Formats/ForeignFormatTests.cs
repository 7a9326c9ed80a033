using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// The foreign formats (vpc, vdi, vhdx) against qemu-img: what qemu-img writes we read as it does,
/// what we write qemu-img reads as if it had written it, and what we create qemu-img opens.
/// </summary>
public sealed class ForeignFormatTests
{
    [Theory]
    [MemberData(nameof(Variants), MemberType = typeof(ForeignImage))]
    public async Task QemuImagesReadAsQemuImgConvertReadsThem(string format, string options)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {format} {OptionArg(options)} img {Size} && {Io(format, "img", Writes)}");
        await ShAsync(dir, $"qemu-img convert -f {format} -O raw img expected.raw");
        await using var d = await ServeAsync(dir, format, dir["img"], writable: false);
        Assert.Equal(await VirtualSizeAsync(dir["img"], format), await ExportSizeAsync(Uri(dir)));
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
    }

    [Theory]
    [InlineData("vpc", "")]
    [InlineData("vpc", "subformat=fixed")]
    [InlineData("vdi", "")]
    [InlineData("vdi", "static=on")]
    [InlineData("vhdx", "")]
    [InlineData("vhdx", "subformat=fixed")]
    [InlineData("qed", "")]
    [InlineData("parallels", "")]
    [InlineData("parallels", "cluster_size=4K")]
    public async Task ConvertedImagesReadAsTheirSource(string format, string options)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f raw src.raw 67125248 && {Io("raw", "src.raw", Writes)}");
        await ShAsync(dir, $"qemu-img convert -f raw -O {format} {OptionArg(options)} src.raw img");
        await using var d = await ServeAsync(dir, format, dir["img"], writable: false);
        await AssertSameAsync(dir["src.raw"], Uri(dir));
    }

    [Theory]
    [MemberData(nameof(Variants), MemberType = typeof(ForeignImage))]
    public async Task OurWritesReadAsQemuWritesOnRaw(string format, string options)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {format} {OptionArg(options)} img {Size}");
        var size = await VirtualSizeAsync(dir["img"], format);
        await ShAsync(dir, $"qemu-img create -q -f raw expected.raw {size} && {Io("raw", "expected.raw", [.. Writes, .. Overwrites])}");
        foreach (var commands in new[] { Writes, Overwrites })
        {
            await using var d = await ServeAsync(dir, format, dir["img"], writable: true);
            (await Tool.ShAsync(Io("raw", Uri(dir), commands))).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        await AssertCheckCleanAsync(dir["img"], format);
        await AssertSameAsync(dir["expected.raw"], dir["img"], format);
        Assert.Equal(size, await VirtualSizeAsync(dir["img"], format));
    }

    /// <summary>
    /// Zero writes allocate nothing: over blocks without storage the file does not grow and qemu-img
    /// map still finds no data there; over data they read back as zeroes, as the same writes on raw.
    /// </summary>
    [Theory]
    [InlineData("vpc")]
    [InlineData("vdi")]
    [InlineData("vhdx")]
    [InlineData("qed")]
    public async Task ZeroWritesAllocateNothing(string format)
    {
        using var dir = new TempDir();
        string[] data = ["write -P 0x11 0 1M"];
        string[] zeroes = ["write -z 512K 128K", "write -z 8M 16M", "write -z 40M 12345"];
        await ShAsync(dir, $"qemu-img create -q -f {format} img {Size} && {Io(format, "img", data)}");
        var size = await VirtualSizeAsync(dir["img"], format);
        await ShAsync(dir, $"qemu-img create -q -f raw expected.raw {size} && {Io("raw", "expected.raw", [.. data, .. zeroes])}");
        var before = new FileInfo(dir["img"]).Length;
        await using (var d = await ServeAsync(dir, format, dir["img"], writable: true))
        {
            (await Tool.ShAsync(Io("raw", Uri(dir), zeroes))).Check("zero writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(before, new FileInfo(dir["img"]).Length);
        var map = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "map", "-f", format, "--output=json", dir["img"])).Check("map").Stdout).RootElement;
        foreach (var e in map.EnumerateArray())
        {
            var (start, length) = (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64());
            if (start < 1 << 20 && e.GetProperty("data").GetBoolean())
            {
                continue;
            }

            Assert.False(e.GetProperty("data").GetBoolean(), $"data at {start}+{length}");
        }

        await AssertCheckCleanAsync(dir["img"], format);
        await AssertSameAsync(dir["expected.raw"], dir["img"], format);
    }

    /// <summary>export-server create prints qemu-img's line and makes an image of the size qemu-img makes, which qemu-img opens and writes.</summary>
    [Theory]
    [InlineData("vpc", "", "10M")]
    [InlineData("vpc", "subformat=fixed", "10M")]
    [InlineData("vpc", "force_size=on", "10M")]
    [InlineData("vpc", "subformat=dynamic,force_size=off", "1G")]
    [InlineData("vdi", "", "10M")]
    [InlineData("vdi", "static=on", "10000k")]
    [InlineData("vhdx", "", "10M")]
    [InlineData("vhdx", "subformat=fixed,block_size=2M", "10M")]
    [InlineData("vhdx", "log_size=3M,block_state_zero=off", "2G")]
    [InlineData("qed", "", "10M")]
    [InlineData("qed", "cluster_size=4096,table_size=2", "10000k")]
    [InlineData("parallels", "", "10M")]
    [InlineData("parallels", "cluster_size=64K", "10000k")]
    public async Task CreatedImagesOpenInQemuImg(string format, string options, string size)
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["o"]);
        Directory.CreateDirectory(dir["q"]);
        var ours = (await Tool.ShAsync($"cd {dir["o"]} && {Daemon.ExportServerPath} create -f {format} {OptionArg(options)} img {size}")).Check("create");
        var theirs = (await Tool.ShAsync($"cd {dir["q"]} && qemu-img create -f {format} {OptionArg(options)} img {size}")).Check("qemu-img create");
        Assert.Equal(theirs.Stdout, ours.Stdout);
        var image = dir["o/img"];
        Assert.Equal(await VirtualSizeAsync(dir["q/img"], format), await VirtualSizeAsync(image, format));
        await AssertCheckCleanAsync(image, format);
        (await Tool.ShAsync(Io(format, image, ["write -P 0x5a 1M 3M", "read -P 0x5a 1M 3M", "read -P 0 0 1M"]))).Check("qemu-io");
        await AssertCheckCleanAsync(image, format);
    }

    [Theory]
    [InlineData("vpc", """{"subformat": "dynamic"}""", 10514432)]
    [InlineData("vpc", """{"subformat": "fixed"}""", 10514432)]
    [InlineData("vpc", """{"force-size": true}""", 10485760)]
    [InlineData("vdi", "{}", 10485760)]
    [InlineData("vdi", """{"preallocation": "metadata"}""", 10485760)]
    [InlineData("vhdx", "{}", 10485760)]
    [InlineData("vhdx", """{"subformat": "fixed", "block-size": 1048576, "log-size": 2097152, "block-state-zero": false}""", 10485760)]
    [InlineData("qed", "{}", 10485760)]
    [InlineData("qed", """{"cluster-size": 4096, "table-size": 2}""", 10485760)]
    [InlineData("parallels", "{}", 10485760)]
    [InlineData("parallels", """{"cluster-size": 65536}""", 10485760)]
    public async Task BlockdevCreateMakesImagesQemuImgOpens(string format, string extra, long size)
    {
        using var dir = new TempDir();
        await using var d = await JobDaemon.StartAsync(dir, "a");
        var path = dir["img"];
        await CreateJobAsync(d, "c0", new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 0 });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = path });
        var options = (JsonObject)JsonNode.Parse(extra)!;
        options["driver"] = format;
        options["file"] = "p";
        options["size"] = size;
        await CreateJobAsync(d, "c1", options);
        await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "p" });
        await d.AddImageAsync("img", path, format);
        await d.ExportAsync("img");
        (await Tool.ShAsync(Io("raw", d.NbdUri("img"), ["write -P 0x3c 2M 1M"]))).Check("write");
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(size, await VirtualSizeAsync(path, format));
        (await Tool.ShAsync(Io(format, path, ["read -P 0x3c 2M 1M", "read -P 0 0 2M"]))).Check("read back");
    }

    [Fact]
    public async Task VpcSizeNotInChsIsRefusedByBlockdevCreateAsQemuDoes()
    {
        using var dir = new TempDir();
        await using var d = await JobDaemon.StartAsync(dir, "a");
        await CreateJobAsync(d, "c0", new JsonObject { ["driver"] = "file", ["filename"] = dir["img"], ["size"] = 0 });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["img"] });
        await d.Qmp.ExecuteAsync("blockdev-create", new JsonObject
        {
            ["job-id"] = "c1", ["options"] = new JsonObject { ["driver"] = "vpc", ["file"] = "p", ["size"] = 10 << 20 },
        });
        await d.WaitStatusAsync("c1", "concluded");
        var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == "c1")!;
        Assert.Equal("The requested image size cannot be represented in CHS geometry", job["error"]!.GetValue<string>());
    }

    internal static async Task CreateJobAsync(JobDaemon d, string id, JsonObject options)
    {
        await d.Qmp.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = options });
        await d.WaitStatusAsync(id, "concluded");
        var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
        Assert.Null(job["error"]);
        await d.Qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id });
    }
}
