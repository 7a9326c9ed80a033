using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>drive-mirror and blockdev-mirror on the real daemon, checked with qemu-img and qemu-io.</summary>
public sealed class MirrorTests
{
    private static async Task<string> PatternedImageAsync(TempDir dir, string name)
    {
        var file = dir[name];
        await QemuImgAsync("create", "-q", "-f", "qcow2", file, "64M");
        await QemuIoAsync(file, "qcow2", "write -P 0x11 0 4M", "write -P 0x22 20M 1M", "write -z 30M 2M", "write -P 0x33 63M 1M");
        return file;
    }

    /// <summary>A client writes through the export during the mirror; a cancel once ready leaves an equal copy.</summary>
    [Fact]
    public async Task DriveMirrorWithWritesThenCancelAfterReadyLeavesAnEqualCopy()
    {
        using var dir = new TempDir();
        var src = await PatternedImageAsync(dir, "src.qcow2");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.ExportAsync("src");
        var writer = QemuIoAsync(d.NbdUri("src"), "nbd", Enumerable.Range(0, 40).Select(i => $"write -P {i + 1} {i * 1536}k 512k").ToArray());
        await d.Qmp.ExecuteAsync("drive-mirror", new JsonObject
        {
            ["job-id"] = "job0", ["device"] = "src", ["target"] = dir["dst.qcow2"], ["format"] = "qcow2", ["sync"] = "full",
        });
        await writer;
        var ready = await d.WaitJobEventAsync("BLOCK_JOB_READY", "job0");
        Assert.Equal("mirror", ready["type"]!.GetValue<string>());
        var info = await d.BlockJobAsync("job0");
        Assert.True(info!["ready"]!.GetValue<bool>());
        Assert.Equal("ready", info["status"]!.GetValue<string>());
        await QemuIoAsync(d.NbdUri("src"), "nbd", "write -P 0x77 10M 64k");
        await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "job0" });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "job0");
        Assert.Null(done["error"]);
        Assert.Equal(done["len"]!.GetValue<long>(), done["offset"]!.GetValue<long>());
        await d.WaitStatusAsync("job0", "null");
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(src, dir["dst.qcow2"]);
        await QemuIoAsync(dir["dst.qcow2"], "qcow2", "read -P 0x77 10M 64k", "read -P 0x33 63M 1M", "read -P 40 " + (39 * 1536) + "k 512k");
    }

    /// <summary>block-job-complete pivots: the export now writes to the target, the source keeps the old data.</summary>
    [Fact]
    public async Task BlockdevMirrorCompletePivotsTheExport()
    {
        using var dir = new TempDir();
        var src = await PatternedImageAsync(dir, "src.qcow2");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["dst.qcow2"], "64M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.AddImageAsync("dst", dir["dst.qcow2"]);
        await d.ExportAsync("src");
        await d.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject
        {
            ["job-id"] = "m", ["device"] = "src", ["target"] = "dst", ["sync"] = "full", ["granularity"] = 65536, ["buf-size"] = 1 << 20,
        });
        await d.WaitJobEventAsync("BLOCK_JOB_READY", "m");
        Assert.Equal("GenericError", (await d.Qmp.ErrorAsync("blockdev-del", new JsonObject { ["node-name"] = "dst" })).Class);
        await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "m" });
        await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m");
        await QemuIoAsync(d.NbdUri("src"), "nbd", "write -P 0x99 0 64k");
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await QemuIoAsync(dir["dst.qcow2"], "qcow2", "read -P 0x99 0 64k", "read -P 0x11 64k 1M", "read -P 0x22 20M 1M");
        await QemuIoAsync(src, "qcow2", "read -P 0x11 0 4M");
    }

    [Fact]
    public async Task ArgumentErrorsAreQemus()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir, "a");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["s.qcow2"], "1M");
        await d.AddImageAsync("s", dir["s.qcow2"]);
        Assert.Equal("Parameter 'granularity' expects a value in range [512B, 64MB]", (await d.Qmp.ErrorAsync("blockdev-mirror", new JsonObject
        {
            ["device"] = "s", ["target"] = "s", ["sync"] = "full", ["granularity"] = 100,
        })).Desc);
        Assert.Equal("Can't mirror node into itself", (await d.Qmp.ErrorAsync("blockdev-mirror", new JsonObject
        {
            ["device"] = "s", ["target"] = "s", ["sync"] = "full",
        })).Desc);
        Assert.Equal(("DeviceNotActive", "Block job 'nope' not found"), await d.Qmp.ErrorAsync("block-job-pause", new JsonObject { ["device"] = "nope" }));
        Assert.Equal(("GenericError", "Job not found"), await d.Qmp.ErrorAsync("job-pause", new JsonObject { ["id"] = "nope" }));
    }
}
