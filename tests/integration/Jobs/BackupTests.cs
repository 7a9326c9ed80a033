using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>drive-backup / blockdev-backup: the target holds the source as it was when the job started.</summary>
public sealed class BackupTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WritesDuringTheBackupDoNotReachIt(bool viaTransaction)
    {
        using var dir = new TempDir();
        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "16M");
        await QemuIoAsync(src, "qcow2", "write -P 0x11 0 16M");
        File.Copy(src, dir["before.qcow2"]);
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.ExportAsync("src");
        var backup = new JsonObject
        {
            ["job-id"] = "bk", ["device"] = "src", ["target"] = dir["bk.qcow2"], ["format"] = "qcow2", ["sync"] = "full", ["speed"] = 8L << 20,
        };
        if (viaTransaction)
        {
            await d.Qmp.ExecuteAsync("transaction", new JsonObject
            {
                ["actions"] = new JsonArray(new JsonObject { ["type"] = "drive-backup", ["data"] = backup }),
            });
        }
        else
        {
            await d.Qmp.ExecuteAsync("drive-backup", backup);
        }

        await QemuIoAsync(d.NbdUri("src"), "nbd", "write -P 0x99 0 64k", "write -P 0x98 8M 1M", "write -P 0x97 15M 1M");
        var info = await d.BlockJobAsync("bk");
        Assert.Equal("backup", info!["type"]!.GetValue<string>());
        Assert.True(info["offset"]!.GetValue<long>() < info["len"]!.GetValue<long>());
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "bk");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(dir["before.qcow2"], dir["bk.qcow2"]);
        await QemuIoAsync(src, "qcow2", "read -P 0x98 8M 1M");
    }

    /// <summary>Pause, resume, set-speed and cancel on a slow backup, with the statuses query-block-jobs shows.</summary>
    [Fact]
    public async Task PauseResumeSetSpeedCancel()
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["s.qcow2"], "64M");
        await QemuIoAsync(dir["s.qcow2"], "qcow2", "write -P 1 0 64M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["t.qcow2"], "64M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("s", dir["s.qcow2"]);
        await d.AddImageAsync("t", dir["t.qcow2"]);
        await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
        {
            ["job-id"] = "j", ["device"] = "s", ["target"] = "t", ["sync"] = "full", ["speed"] = 1L << 20, ["auto-dismiss"] = false,
        });
        // Consume the start's events (running, then paused and running again as the transaction
        // ends, as in QEMU), so the waits below see the pause and the resume.
        foreach (var status in new[] { "running", "paused", "running" })
        {
            await d.WaitStatusAsync("j", status);
        }

        await d.Qmp.ExecuteAsync("block-job-pause", new JsonObject { ["device"] = "j" });
        await d.WaitStatusAsync("j", "paused");
        var paused = await d.BlockJobAsync("j");
        Assert.True(paused!["paused"]!.GetValue<bool>());
        Assert.False(paused["busy"]!.GetValue<bool>());
        Assert.Equal(("GenericError", "The block job is already paused"), await d.Qmp.ErrorAsync("job-pause", new JsonObject { ["id"] = "j" }));
        var offset = paused["offset"]!.GetValue<long>();
        await Task.Delay(300);
        Assert.Equal(offset, (await d.BlockJobAsync("j"))!["offset"]!.GetValue<long>());
        await d.Qmp.ExecuteAsync("block-job-set-speed", new JsonObject { ["device"] = "j", ["speed"] = 2L << 20 });
        Assert.Equal(2L << 20, (await d.BlockJobAsync("j"))!["speed"]!.GetValue<long>());
        await d.Qmp.ExecuteAsync("job-resume", new JsonObject { ["id"] = "j" });
        await d.WaitStatusAsync("j", "running");
        Assert.Equal(("GenericError", "Job 'j' in state 'running' cannot accept command verb 'complete'"), await d.Qmp.ErrorAsync("job-complete", new JsonObject { ["id"] = "j" }));
        await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
        var cancelled = await d.WaitJobEventAsync("BLOCK_JOB_CANCELLED", "j");
        Assert.True(cancelled["offset"]!.GetValue<long>() < 64L << 20);
        await d.WaitStatusAsync("j", "concluded");
        var jobs = (JsonArray)await d.Qmp.ExecuteAsync("query-jobs");
        Assert.Equal("concluded", jobs[0]!["status"]!.GetValue<string>());
        Assert.Equal("Operation canceled", jobs[0]!["error"]!.GetValue<string>());
        await d.Qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = "j" });
        Assert.Empty((JsonArray)await d.Qmp.ExecuteAsync("query-block-jobs"));
    }

    /// <summary>The remote target goes away: report fails the job, stop pauses it with an error event.</summary>
    [Theory]
    [InlineData("report")]
    [InlineData("stop")]
    public async Task TargetErrorPolicies(string policy)
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["s.qcow2"], "32M");
        await QemuIoAsync(dir["s.qcow2"], "qcow2", "write -P 1 0 32M");
        await QemuImgAsync("create", "-q", "-f", "raw", dir["t.raw"], "32M");
        var b = await StartAsync(dir, "b", false);
        await b.AddImageAsync("t", dir["t.raw"], "raw");
        await b.ExportAsync("t");
        await using var a = await StartAsync(dir, "a");
        await a.AddImageAsync("s", dir["s.qcow2"]);
        await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "t",
            ["server"] = new JsonObject { ["type"] = "unix", ["path"] = b.NbdSocket },
        });
        await a.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
        {
            ["job-id"] = "j", ["device"] = "s", ["target"] = "remote", ["sync"] = "full", ["speed"] = 4L << 20, ["on-target-error"] = policy,
        });

        // The pause the transaction's end gives, so that the wait below sees the error's.
        await a.WaitStatusAsync("j", "paused");
        await Task.Delay(500);
        b.Process.Signal(9);
        await b.DisposeAsync();
        var error = await a.WaitJobEventAsync("BLOCK_JOB_ERROR", "j");
        Assert.Equal("write", error["operation"]!.GetValue<string>());
        Assert.Equal(policy, error["action"]!.GetValue<string>());
        if (policy == "report")
        {
            var done = await a.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "j");
            Assert.NotNull(done["error"]);
        }
        else
        {
            await a.WaitStatusAsync("j", "paused");
            var info = await a.BlockJobAsync("j");
            Assert.Equal("failed", info!["io-status"]!.GetValue<string>());
            await a.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await a.WaitJobEventAsync("BLOCK_JOB_CANCELLED", "j");
        }
    }

    /// <summary>
    /// x-perf: the same bad values get the same errors from both implementations, and a backup with
    /// tuned workers and chunk size completes with the right content.
    /// </summary>
    [Fact]
    public async Task XPerfIsCheckedAsQemuChecksIt()
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["s.qcow2"], "8M");
        await QemuIoAsync(dir["s.qcow2"], "qcow2", "write -P 0x5c 0 8M");
        JsonObject[] cases =
        [
            new() { ["max-workers"] = 0 },
            new() { ["max-workers"] = 1L << 31 },
            new() { ["max-chunk"] = -1 },
            new() { ["max-chunk"] = 4096 },
            new() { ["max-workers"] = true },
            new() { ["bogus"] = 1 },
        ];
        var errors = new List<(string, string)>[2];
        for (var i = 0; i < 2; i++)
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir[$"t{i}.qcow2"], "8M");
            await using var d = await StartAsync(dir, $"d{i}", qsd: i == 1);
            await d.AddImageAsync("s", dir["s.qcow2"]);
            await d.AddImageAsync("t", dir[$"t{i}.qcow2"]);
            errors[i] = [];
            foreach (var perf in cases)
            {
                var args = new JsonObject { ["job-id"] = "bk", ["device"] = "s", ["target"] = "t", ["sync"] = "full", ["x-perf"] = perf.DeepClone() };
                errors[i].Add(await d.Qmp.ErrorAsync("blockdev-backup", args));
            }

            await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
            {
                ["job-id"] = "bk", ["device"] = "s", ["target"] = "t", ["sync"] = "full",
                ["x-perf"] = new JsonObject { ["max-workers"] = 2, ["max-chunk"] = 131072, ["use-copy-range"] = false },
            });
            var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "bk");
            Assert.Null(done["error"]);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await AssertSameAsync(dir["s.qcow2"], dir[$"t{i}.qcow2"]);
        }

        Assert.Equal(errors[1], errors[0]);
        Assert.Contains(("GenericError", "Required max-chunk (4096) is less than backup cluster size (65536)"), errors[0]);
    }
}
