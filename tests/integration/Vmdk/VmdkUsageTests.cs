using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Vmdk.VmdkExport;

namespace ExportServer.IntegrationTests.Vmdk;

/// <summary>
/// vmdk images wherever an image goes: `serve` and `mount` probe them, drive-backup and drive-mirror
/// create them as targets, blockdev-create and `export-server create` make them as qemu-img does.
/// </summary>
public sealed class VmdkUsageTests
{
    private static async Task<JsonElement> InfoAsync(string image) =>
        JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", image)).Check("info").Stdout).RootElement.Clone();

    /// <summary>
    /// Extent files named by the user (extents.N): qemu-storage-daemon refuses the key before it
    /// opens anything, so a node holding the extent does not turn the refusal into a lock error.
    /// </summary>
    [Theory]
    [InlineData("extents.0=e0")]
    [InlineData("extents.0.driver=file,extents.0.filename=@DIR@/t-s001.vmdk")]
    public async Task ExtentOptionsAreRefusedAsQemuStorageDaemonRefusesThem(string extents)
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse t.vmdk 64M");
        string[] args =
        [
            "--blockdev", $"driver=file,node-name=f,filename={dir["t.vmdk"]}",
            "--blockdev", $"driver=file,node-name=e0,filename={dir["t-s001.vmdk"]}",
            "--blockdev", $"driver=vmdk,node-name=v,file=f,{extents.Replace("@DIR@", dir.Path, StringComparison.Ordinal)}",
        ];
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        var theirs = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", args, TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, theirs.ExitCode);
        Assert.NotEqual(0, ours.ExitCode);
        Assert.EndsWith("Parameter 'extents' is unexpected", ours.Stderr.Trim());
        Assert.Equal(theirs.Stderr.Replace("qemu-storage-daemon:", "export-server:", StringComparison.Ordinal).Trim(), ours.Stderr.Trim());
    }

    [Fact]
    public async Task ServeProbesVmdkAndServesItWritable()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -f vmdk disk.vmdk 64M && {Io("vmdk", "disk.vmdk", ["write -P 0x21 0 1M"])}");
        var uri = $"nbd+unix:///disk?socket={dir["s.sock"]}";
        await using (var d = await Daemon.StartAsync(dir, "serve", dir["disk.vmdk"], "--socket", dir["s.sock"]))
        {
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x21 0 1M", "-c", "write -P 0x5a 1M 300K", uri)).Check("read and write");
            Assert.DoesNotContain("WARNING", d.Stderr);
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", dir["disk.vmdk"])).Check("check");
        (await Tool.RunAsync("qemu-io", "-f", "vmdk", "-r", "-c", "read -P 0x5a 1M 300K", "-c", "read -P 0x21 0 1M", dir["disk.vmdk"])).Check("read back");
    }

    [Fact]
    public async Task MountedVmdkChainEqualsQemuImgConvertAndWritesStayClean()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -f vmdk base.vmdk 64M && {Io("vmdk", "base.vmdk", ["write -P 0x41 0 8M"])}");
        await ShAsync(dir, $"qemu-img create -f vmdk -b base.vmdk -F vmdk top.vmdk && {Io("vmdk", "top.vmdk", ["write -P 0x43 4M 2M"])}");
        await ShAsync(dir, "qemu-img convert -O raw top.vmdk expected.raw");
        await MountedImage.CompareAndWriteAsync(dir, dir["top.vmdk"], dir["expected.raw"], 1000000, 3000);

        (await Tool.RunAsync("qemu-img", "check", dir["top.vmdk"])).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-F", "raw", dir["top.vmdk"], dir["expected.raw"])).Check("compare");
    }

    [Theory]
    [InlineData("drive-backup")]
    [InlineData("drive-mirror")]
    public async Task JobTargetsOfFormatVmdkAreCleanCopies(string command)
    {
        using var dir = new TempDir();
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "qcow2", dir["src.qcow2"], "32M");
        await JobDaemon.QemuIoAsync(dir["src.qcow2"], "qcow2", "write -P 0x11 0 3M", "write -P 0x12 20M 100K", "write -z 1M 64K");
        await using (var d = await JobDaemon.StartAsync(dir, "a"))
        {
            await d.AddImageAsync("src", dir["src.qcow2"]);
            await d.Qmp.ExecuteAsync(command, new JsonObject
            {
                ["job-id"] = "j", ["device"] = "src", ["target"] = dir["t.vmdk"], ["format"] = "vmdk", ["sync"] = "full",
            });
            if (command == "drive-mirror")
            {
                await d.WaitJobEventAsync("BLOCK_JOB_READY", "j");
                await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "j" });
            }

            Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "j"))["error"]);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        (await Tool.RunAsync("qemu-img", "check", dir["t.vmdk"])).Check("check");
        await JobDaemon.AssertSameAsync(dir["src.qcow2"], dir["t.vmdk"], "qcow2", "vmdk");
        Assert.Equal("monolithicSparse", (await InfoAsync(dir["t.vmdk"])).GetProperty("format-specific").GetProperty("data").GetProperty("create-type").GetString());
    }

    [Fact]
    public async Task BlockdevCreateMakesWhatQemuImgMakes()
    {
        using var dir = new TempDir();
        await using var d = await JobDaemon.StartAsync(dir, "a");
        async Task CreateAsync(string id, JsonObject options) => Assert.Null(await d.BlockdevCreateAsync(id, options));

        async Task FileAsync(string name)
        {
            await CreateAsync("f-" + name, new JsonObject { ["driver"] = "file", ["filename"] = dir[name], ["size"] = 0 });
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = name, ["filename"] = dir[name] });
        }

        await FileAsync("s.vmdk");
        await CreateAsync("s", new JsonObject
        {
            ["driver"] = "vmdk", ["file"] = "s.vmdk", ["size"] = 100 << 20, ["zeroed-grain"] = true, ["adapter-type"] = "lsilogic",
            ["hwversion"] = "7", ["toolsversion"] = "10",
        });
        await ShAsync(dir, "qemu-img create -q -f vmdk -o zeroed_grain=on,adapter_type=lsilogic,hwversion=7,toolsversion=10 q.vmdk 100M");
        Assert.Equal(File.ReadAllBytes(dir["q.vmdk"])[..512], File.ReadAllBytes(dir["s.vmdk"])[..512]);
        Assert.Equal(new FileInfo(dir["q.vmdk"]).Length, new FileInfo(dir["s.vmdk"]).Length);

        await FileAsync("f.vmdk");
        await FileAsync("f-f001.vmdk");
        await FileAsync("f-f002.vmdk");
        await CreateAsync("f", new JsonObject
        {
            ["driver"] = "vmdk", ["file"] = "f.vmdk", ["size"] = (2L << 30) + (1 << 20), ["subformat"] = "twoGbMaxExtentFlat",
            ["extents"] = new JsonArray("f-f001.vmdk", "f-f002.vmdk"),
        });
        Assert.Equal("Image size must be a multiple of 512 bytes", await d.BlockdevCreateAsync("bad", new JsonObject
        {
            ["driver"] = "vmdk", ["file"] = "s.vmdk", ["size"] = 1000,
        }));

        foreach (var node in new[] { "s.vmdk", "f.vmdk", "f-f001.vmdk", "f-f002.vmdk" })
        {
            await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = node });
        }

        (await Tool.RunAsync("qemu-img", "check", dir["s.vmdk"])).Check("check sparse");
        (await Tool.RunAsync("qemu-img", "check", dir["f.vmdk"])).Check("check flat");
        var flat = (await InfoAsync(dir["f.vmdk"])).GetProperty("format-specific").GetProperty("data");
        Assert.Equal("twoGbMaxExtentFlat", flat.GetProperty("create-type").GetString());
        Assert.Equal(2, flat.GetProperty("extents").GetArrayLength());
        Assert.Equal(1 << 20, new FileInfo(dir["f-f002.vmdk"]).Length);
    }

    [Fact]
    public async Task CreateCommandPrintsQemuImgsLineAndMakesImagesQemuImgOpens()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["q"]);
        Directory.CreateDirectory(dir["o"]);
        string[][] cases =
        [
            ["-f", "vmdk", "a.vmdk", "3G"],
            ["-f", "vmdk", "-o", "subformat=monolithicFlat", "b.vmdk", "10M"],
            ["-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse,adapter_type=buslogic", "c.vmdk", "5G"],
            ["-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat,hwversion=6,toolsversion=9", "d.vmdk", "3G"],
            ["-f", "vmdk", "-o", "subformat=streamOptimized,compat6=on", "e.vmdk", "1G"],
            ["-f", "vmdk", "-o", "zeroed_grain=on,adapter_type=legacyESX", "f.vmdk", "1000"],
            ["-f", "vmdk", "-b", "a.vmdk", "-F", "vmdk", "g.vmdk"],
        ];
        foreach (var args in cases)
        {
            var theirs = (await Tool.ShAsync($"cd {dir["q"]} && qemu-img create {string.Join(' ', args)}")).Check("qemu-img");
            var ours = (await Tool.ShAsync($"cd {dir["o"]} && {Daemon.ExportServerPath} create {string.Join(' ', args)}")).Check("create");
            Assert.Equal(theirs.Stdout, ours.Stdout);
        }

        Assert.Equal(Directory.GetFiles(dir["q"]).Select(Path.GetFileName).Order(), Directory.GetFiles(dir["o"]).Select(Path.GetFileName).Order());
        foreach (var image in new[] { "a", "b", "c", "d", "e", "f", "g" })
        {
            (await Tool.RunAsync("qemu-img", "check", dir[$"o/{image}.vmdk"])).Check($"check {image}");
            var o = await InfoAsync(dir[$"o/{image}.vmdk"]);
            var q = await InfoAsync(dir[$"q/{image}.vmdk"]);
            Assert.Equal(q.GetProperty("virtual-size").GetInt64(), o.GetProperty("virtual-size").GetInt64());
            Assert.Equal(
                q.GetProperty("format-specific").GetProperty("data").GetProperty("create-type").GetString(),
                o.GetProperty("format-specific").GetProperty("data").GetProperty("create-type").GetString());
        }

        Assert.Equal("a.vmdk", (await InfoAsync(dir["o/g.vmdk"])).GetProperty("backing-filename").GetString());
        foreach (var (args, message) in new (string, string)[]
        {
            ("-o subformat=foo x.vmdk 1M", "x.vmdk: invalid parameter value: foo"),
            ("-o subformat=monolithicFlat,zeroed_grain=on x.vmdk 1M", "x.vmdk: Flat image can't enable zeroed grain"),
            ("-o compat6=on,hwversion=7 x.vmdk 1M", "x.vmdk: compat6 cannot be enabled with hwversion set"),
            ("-o subformat=monolithicFlat -b a.vmdk -F vmdk x.vmdk 1M", "x.vmdk: Flat image can't have backing file"),
            ("-u -b a.vmdk -F qcow2 x.vmdk 1M", "x.vmdk: backing_file must be a vmdk image"),
        })
        {
            var ours = await Tool.ShAsync($"cd {dir["o"]} && {Daemon.ExportServerPath} create -f vmdk {args}");
            Assert.NotEqual(0, ours.ExitCode);
            Assert.Contains(message, ours.Stderr);
        }
    }
}
