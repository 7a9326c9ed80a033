using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// blockdev-mirror with copy-mode=write-blocking on raw files (read directly, while the job runs):
/// once READY every write through the source's export is on the target when it returns, also with
/// the job paused (so no background pass can have copied it), as qemu-storage-daemon does; and the
/// job converges and completes under writes that go on the whole time.
/// </summary>
public sealed class MirrorWriteBlockingTests
{
    private const long Size = 16L << 20;

    [Theory]
    [InlineData(false, "write-blocking")]
    [InlineData(true, "write-blocking")]
    [InlineData(false, "background")]
    public async Task AfterReadyEachWriteIsOnTheTargetWhenItReturns(bool qsd, string mode)
    {
        using var dir = new TempDir();
        var (src, dst) = (dir["src.raw"], dir["dst.raw"]);
        await QemuImgAsync("create", "-q", "-f", "raw", src, Size.ToString());
        await QemuImgAsync("create", "-q", "-f", "raw", dst, Size.ToString());
        await QemuIoAsync(src, "raw", "write -P 0x11 0 4M", "write -P 0x22 9M 1M");
        await using var d = await StartAsync(dir, "wb", qsd);
        await d.AddImageAsync("src", src, "raw");
        await d.AddImageAsync("dst", dst, "raw");
        await d.ExportAsync("src");
        await d.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject
        {
            ["job-id"] = "m", ["device"] = "src", ["target"] = "dst", ["sync"] = "full", ["copy-mode"] = mode,
        });
        await d.WaitJobEventAsync("BLOCK_JOB_READY", "m");
        await d.Qmp.ExecuteAsync("block-job-pause", new JsonObject { ["device"] = "m" });
        await d.WaitStatusAsync("m", "standby");

        string[] writes = ["write -P 0x77 100k 4k", "write -P 0x78 1M 64k", "write -P 0x79 5000001 70000", "write -z 2M 128k"];
        var allSynced = true;
        foreach (var w in writes)
        {
            await QemuIoAsync(d.NbdUri("src"), "nbd", w);
            allSynced &= File.ReadAllBytes(src).AsSpan().SequenceEqual(File.ReadAllBytes(dst));
        }

        Assert.Equal(mode == "write-blocking", allSynced);
        await d.Qmp.ExecuteAsync("block-job-resume", new JsonObject { ["device"] = "m" });
        await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "m" });
        Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m"))["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.True(File.ReadAllBytes(src).AsSpan().SequenceEqual(File.ReadAllBytes(dst)));
    }

    [Fact]
    public async Task WritesTheWholeTimeThenCompleteLeavesAnEqualCopy()
    {
        using var dir = new TempDir();
        var (src, dst) = (dir["src.qcow2"], dir["dst.qcow2"]);
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "32M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dst, "32M");
        await QemuIoAsync(src, "qcow2", "write -P 0x11 0 24M");
        await using var d = await StartAsync(dir, "wb");
        await d.AddImageAsync("src", src);
        await d.AddImageAsync("dst", dst);
        await d.ExportAsync("src");
        await d.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject
        {
            ["job-id"] = "m", ["device"] = "src", ["target"] = "dst", ["sync"] = "full", ["copy-mode"] = "write-blocking", ["speed"] = 16L << 20,
        });
        var ready = d.WaitJobEventAsync("BLOCK_JOB_READY", "m");
        var batches = 0;
        for (; batches < 40 && (!ready.IsCompleted || batches < 3); batches++)
        {
            var b = batches;
            await QemuIoAsync(d.NbdUri("src"), "nbd", Enumerable.Range(0, 8).Select(i => $"write -P {(b * 8 + i) % 250 + 1} {(b * 8 + i) * 389 % 32000}k 36k").ToArray());
        }

        await ready.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(batches >= 3);
        await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "m" });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m");
        Assert.Null(done["error"]);
        Assert.Equal(done["len"]!.GetValue<long>(), done["offset"]!.GetValue<long>());
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(src, dst);
    }
}
