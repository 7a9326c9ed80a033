using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// block-stream on the guide's chain [A] &lt;- [B] &lt;- [C] &lt;- [D]: each of the guide's three cases,
/// checked with qemu-img (chain, check, compare against the chain flattened beforehand).
/// </summary>
public sealed class StreamTests
{
    [Fact]
    public async Task StreamingTheWholeChainLeavesDAlone()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        var done = await c.RunToCompletionAsync("block-stream", new JsonObject { ["job-id"] = "s", ["device"] = "D" });
        Assert.Equal("stream", done["type"]!.GetValue<string>());
        Assert.Equal(["D"], await c.ChainAsync());
        Assert.Null(await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
        Assert.DoesNotContain("B", await c.NodesAsync());
        Assert.DoesNotContain("C", await c.NodesAsync());
        await QemuIoAsync(d.NbdUri("A"), "nbd", "read -P 0xa1 0 512K", "read -P 0xc3 2098152 70000", "read -P 0 8M 1M", "read -P 0xd4 4M 64K");
    }

    [Fact]
    public async Task StreamingDownToBaseNodeAMakesABacksD()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        await c.RunToCompletionAsync("block-stream", new JsonObject { ["job-id"] = "s", ["device"] = "D", ["base-node"] = "A" });
        Assert.Equal(["D", "A"], await c.ChainAsync());
        Assert.Equal(c["A"], await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
        Assert.Equal(["A", "D"], await c.NodesAsync());

        // D now holds what B and C held (C's zeroes over A's data included), nothing of A's own.
        await QemuIoAsync($$"""json:{"driver":"qcow2","file":{"driver":"file","filename":"{{c["D"]}}"},"backing":null}""", "qcow2",
            "read -P 0xb2 512K 1M", "read -P 0xb3 16M 2M", "read -P 0xc3 2098152 70000", "read -P 0 8M 1M", "read -P 0 0 512K");
    }

    [Fact]
    public async Task StreamingWithAnIntermediateBaseDropsOnlyC()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;

        // 'bottom' names the lowest layer streamed (C): B is the base. The recorded name is the one given.
        await c.RunToCompletionAsync("block-stream", new JsonObject
        {
            ["job-id"] = "s", ["device"] = "D", ["bottom"] = "C", ["backing-file"] = "B.qcow2", ["backing-mask-protocol"] = true,
        });
        Assert.Equal(["D", "B", "A"], await c.ChainAsync());
        Assert.Equal("B.qcow2", await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
        Assert.Equal(["A", "B", "D"], await c.NodesAsync());

        // The same by file name on B's chain (now D <- B): nothing left between, only the header changes.
        await c.RunToCompletionAsync("block-stream", new JsonObject { ["job-id"] = "s2", ["device"] = "D", ["base"] = c["B"] });
        Assert.Equal(c["B"], await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
    }

    [Fact]
    public async Task SpeedPauseAndCancelThenAStreamUnderWrites()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir, bLayerMiB: 24);
        await using var d = c.Daemon;
        await d.Qmp.ExecuteAsync("block-stream", new JsonObject { ["job-id"] = "s", ["device"] = "D", ["base-node"] = "A", ["speed"] = 2 << 20 });
        await Task.Delay(700);
        var running = await d.BlockJobAsync("s");
        Assert.Equal(2 << 20, running!["speed"]!.GetValue<long>());
        Assert.InRange(running["offset"]!.GetValue<long>(), 1, running["len"]!.GetValue<long>() - 1);

        await d.Qmp.ExecuteAsync("block-job-pause", new JsonObject { ["device"] = "s" });
        await d.WaitStatusAsync("s", "paused");
        var paused = (await d.BlockJobAsync("s"))!["offset"]!.GetValue<long>();
        await Task.Delay(600);
        Assert.Equal(paused, (await d.BlockJobAsync("s"))!["offset"]!.GetValue<long>());
        Assert.True((await d.BlockJobAsync("s"))!["paused"]!.GetValue<bool>());
        await d.Qmp.ExecuteAsync("block-job-resume", new JsonObject { ["device"] = "s" });
        await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "s" });
        var cancelled = await d.WaitJobEventAsync("BLOCK_JOB_CANCELLED", "s");
        Assert.True(cancelled["offset"]!.GetValue<long>() < cancelled["len"]!.GetValue<long>());
        await d.WaitStatusAsync("s", "null");

        // A cancelled stream changes no content and no chain.
        Assert.Equal(["D", "C", "B", "A"], await c.ChainAsync());
        await c.AssertUnchangedAsync();
        Assert.Equal(["A", "B", "C", "D"], await c.NodesAsync());

        // Again at full speed, with a client writing through the export the whole time.
        var writes = Enumerable.Range(0, 48).Select(i => $"write -P {i + 1} {i * 1024 + 100}k 300k").ToArray();
        var writer = QemuIoAsync(d.NbdUri("A"), "nbd", writes);
        await c.RunToCompletionAsync("block-stream", new JsonObject { ["job-id"] = "s2", ["device"] = "D", ["base-node"] = "A" });
        await writer;
        Assert.Equal(["D", "A"], await c.ChainAsync());
        await QemuIoAsync(c.Expected, "raw", writes);
        await c.AssertUnchangedAsync();
    }

    /// <summary>
    /// The stream's backing is a remote export that goes away while the job waits on its speed: a
    /// guest write through the top neither waits for the job nor pauses it. A whole-cluster write
    /// succeeds and one that needs the old cluster's data fails, and the job goes on running, in
    /// both implementations.
    /// </summary>
    [Fact]
    public async Task AGuestWriteDoesNotWaitForAStreamWhoseBackingFails()
    {
        using var dir = new TempDir();
        var results = new List<string>[2];
        for (var i = 0; i < 2; i++)
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "16M");
            await QemuIoAsync(dir["base.qcow2"], "qcow2", "write -P 0x0b 0 16M");
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir["top.qcow2"], "16M");
            var b = await StartAsync(dir, $"b{i}", qsd: true);
            await b.AddImageAsync("base", dir["base.qcow2"]);
            await b.Qmp.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e", ["node-name"] = "base", ["name"] = "base" });
            await using var a = await StartAsync(dir, $"a{i}", qsd: i == 1);
            await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "base", ["read-only"] = true,
                ["server"] = new JsonObject { ["type"] = "unix", ["path"] = b.NbdSocket },
            });
            await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2", ["node-name"] = "top", ["backing"] = "remote",
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["top.qcow2"] },
            });
            await a.ExportAsync("top");
            await a.Qmp.ExecuteAsync("block-stream", new JsonObject { ["job-id"] = "s", ["device"] = "top", ["speed"] = 1, ["on-error"] = "stop" });
            await Task.Delay(300);
            b.Process.Signal(9);
            await b.DisposeAsync();

            results[i] = [];
            foreach (var write in new[] { "write -P 0x55 8M 64k", "write -P 0x56 9M 4k" })
            {
                var run = await Tool.RunAsync("timeout", "10", "qemu-io", "-f", "raw", "-c", write, a.NbdUri("top"));
                results[i].Add(run.ExitCode switch
                {
                    0 => "written",
                    124 => "held",
                    _ => (run.Stdout + run.Stderr).Contains("Input/output error") ? "EIO" : run.Stdout + run.Stderr,
                });
            }

            var job = await a.BlockJobAsync("s");
            results[i].Add($"{job!["status"]} {job["io-status"]}");
            await a.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "s", ["force"] = true });
            await a.WaitStatusAsync("s", "null");
        }

        Assert.Equal(results[1], results[0]);
        Assert.Equal(["written", "EIO", "running ok"], results[0]);
    }
}
