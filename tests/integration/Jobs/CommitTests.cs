using System.Diagnostics;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// block-commit on the guide's chain [A] &lt;- [B] &lt;- [C] &lt;- [D]: intermediate commits that end on
/// their own, active commit that waits for block-job-complete, and QEMU's answers to bad arguments.
/// </summary>
public sealed class CommitTests
{
    [Fact]
    public async Task CommittingBAndCIntoAMakesABacksD()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        var done = await c.RunToCompletionAsync("block-commit", new JsonObject
        {
            ["job-id"] = "c", ["device"] = "D", ["top-node"] = "C", ["base-node"] = "A",
        });
        Assert.Equal("commit", done["type"]!.GetValue<string>());
        Assert.Equal(["D", "A"], await c.ChainAsync());
        Assert.Equal(c["A"], await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
        Assert.Equal(["A", "D"], await c.NodesAsync());

        // A alone now holds B's and C's data, C's zeroes over its own included; the base is read-only again.
        await QemuIoAsync(c["A"], "qcow2", "read -P 0xa1 0 512K", "read -P 0xb2 512K 1M", "read -P 0xc3 2098152 70000", "read -P 0 8M 1M", "read -P 0xb3 16M 2M");
        var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        Assert.Contains(nodes, n => n!["node-name"]!.GetValue<string>() == "A" && n["ro"]!.GetValue<bool>());
    }

    [Fact]
    public async Task CommittingCIntoBByFileNames()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        await c.RunToCompletionAsync("block-commit", new JsonObject
        {
            ["job-id"] = "c", ["device"] = "D", ["top"] = c["C"], ["base"] = c["B"], ["backing-file"] = "B.qcow2",
        });
        Assert.Equal(["D", "B", "A"], await c.ChainAsync());
        Assert.Equal("B.qcow2", await c.BackingNameAsync("D"));
        await c.AssertUnchangedAsync();
        Assert.Equal(["A", "B", "D"], await c.NodesAsync());
    }

    [Fact]
    public async Task ActiveCommitWithWritesThenCompletePutsEverythingInTheBase()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        var writes = Enumerable.Range(0, 40).Select(i => $"write -P {i + 1} {i * 1536 + 7}k 400k").ToArray();
        var writer = QemuIoAsync(d.NbdUri("A"), "nbd", writes);
        await d.Qmp.ExecuteAsync("block-commit", new JsonObject { ["job-id"] = "ac", ["device"] = "D", ["base-node"] = "A" });
        var ready = await d.WaitJobEventAsync("BLOCK_JOB_READY", "ac");
        Assert.Equal("commit", ready["type"]!.GetValue<string>());
        await writer;
        var info = await d.BlockJobAsync("ac");
        Assert.Equal("ready", info!["status"]!.GetValue<string>());

        await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "ac" });
        Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "ac"))["error"]);
        await d.WaitStatusAsync("ac", "null");

        // The export now writes to A, the committed layers are closed and A holds the whole disk.
        await QemuIoAsync(d.NbdUri("A"), "nbd", "write -P 0xee 40M 1M");
        Assert.Equal(["A"], await c.NodesAsync());
        Assert.Equal(["A"], await c.ChainAsync("A"));
        await QemuIoAsync(c.Expected, "raw", [.. writes, "write -P 0xee 40M 1M"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(c.Expected, c["A"], "raw", "qcow2");
        (await Tool.RunAsync("qemu-img", "check", c["A"])).Check("check A");
    }

    [Fact]
    public async Task CancelledActiveCommitLeavesTheChainAsItWas()
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir);
        await using var d = c.Daemon;
        await d.Qmp.ExecuteAsync("block-commit", new JsonObject { ["job-id"] = "ac", ["device"] = "D", ["top-node"] = "D", ["base-node"] = "B" });
        await d.WaitJobEventAsync("BLOCK_JOB_READY", "ac");
        await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "ac" });
        await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "ac");
        await d.WaitStatusAsync("ac", "null");
        await QemuIoAsync(d.NbdUri("A"), "nbd", "write -P 0x5a 0 64K");
        Assert.Equal(["D", "C", "B", "A"], await c.ChainAsync());
        Assert.Equal(["A", "B", "C", "D"], await c.NodesAsync());
        await QemuIoAsync(c["D"], "qcow2", "read -P 0x5a 0 64K", "read -P 0xd4 4M 64K", "read -P 0xb3 16M 2M");
    }

    /// <summary>The same bad requests get the same answers from qemu-storage-daemon and from us.</summary>
    [Fact]
    public async Task ArgumentErrorsMatchQemuStorageDaemon()
    {
        var answers = new List<string>[2];
        for (var i = 0; i < 2; i++)
        {
            using var dir = new TempDir();
            var c = await StreamChain.BuildAsync(dir, qsd: i == 0);
            await using var d = c.Daemon;
            answers[i] = [];
            foreach (var (command, args) in BadRequests(c))
            {
                var reply = await d.Qmp.SendAsync(command, args);
                var answer = reply["error"] is { } e ? $"{e["class"]}: {e["desc"]}" : "accepted";
                answers[i].Add($"{command} {args.ToJsonString()}: {answer}".Replace(dir.Path, "DIR", StringComparison.Ordinal));
            }
        }

        Assert.Equal(answers[0].Count, answers[1].Count);
        Assert.All(answers[0].Zip(answers[1]), p => Assert.Equal(p.First, p.Second));
    }

    private static IEnumerable<(string, JsonObject)> BadRequests(StreamChain c)
    {
        JsonObject Args(params (string Key, string Value)[] kv)
        {
            var o = new JsonObject { ["job-id"] = "bad" };
            foreach (var (k, v) in kv)
            {
                o[k] = v;
            }

            return o;
        }

        yield return ("block-commit", Args(("device", "X")));
        yield return ("block-commit", Args(("device", "B")));
        yield return ("block-commit", Args(("device", "D"), ("top-node", "B"), ("base-node", "B")));
        yield return ("block-commit", Args(("device", "D"), ("top-node", "B"), ("base-node", "C")));
        yield return ("block-commit", Args(("device", "D"), ("top-node", "X")));
        yield return ("block-commit", Args(("device", "D"), ("base-node", "X")));
        yield return ("block-commit", Args(("device", "D"), ("top", "/nope")));
        yield return ("block-commit", Args(("device", "D"), ("base", "/nope")));
        yield return ("block-commit", Args(("device", "D"), ("top", c["C"]), ("top-node", "C")));
        yield return ("block-commit", Args(("device", "D"), ("base", c["A"]), ("base-node", "A")));
        yield return ("block-commit", Args(("device", "D"), ("top-node", "A")));
        yield return ("block-commit", Args(("device", "D"), ("base-node", "A"), ("backing-file", "x")));
        yield return ("block-stream", Args(("device", "X")));
        yield return ("block-stream", Args(("device", "D"), ("base-node", "D")));
        yield return ("block-stream", Args(("device", "B"), ("base-node", "C")));
        yield return ("block-stream", Args(("device", "D"), ("base-node", "X")));
        yield return ("block-stream", Args(("device", "D"), ("base", "/nope")));
        yield return ("block-stream", Args(("device", "D"), ("base", c["A"]), ("base-node", "A")));
        yield return ("block-stream", Args(("device", "D"), ("base", c["A"]), ("bottom", "B")));
        yield return ("block-stream", Args(("device", "D"), ("bottom", "B"), ("base-node", "A")));
        yield return ("block-stream", Args(("device", "D"), ("bottom", "X")));
        yield return ("block-stream", Args(("device", "D"), ("backing-file", "x")));

        // Accepted: the bottom may be the device itself (nothing to stream).
        yield return ("block-stream", Args(("device", "D"), ("bottom", "D")));
    }

    /// <summary>
    /// A chain opened by a relative path, whose headers name their backing files relatively: commit's
    /// top and stream's base are found by absolute, relative and roundabout names of the same file, as
    /// in qemu-storage-daemon, and a name that is no layer (or no path at all) is refused the same way.
    /// </summary>
    [Fact]
    public async Task LayersAreFoundByAnyNameOfTheirFile()
    {
        using var dir = new TempDir();
        var answers = new List<string>[2];
        for (var i = 0; i < 2; i++)
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "4M");
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir["mid.qcow2"]);
            await QemuIoAsync(dir["mid.qcow2"], "qcow2", "write -P 7 0 2M");
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir["top.qcow2"]);
            await using var d = await StartAsync(dir, $"d{i}", qsd: i == 1);
            await d.AddImageAsync("top", Path.GetRelativePath(Environment.CurrentDirectory, dir["top.qcow2"]));
            var dirName = Path.GetFileName(Path.GetDirectoryName(dir["top.qcow2"]))!;
            (string Command, string Key, string Name)[] calls =
            [
                ("block-commit", "top", dir["mid.qcow2"]),
                ("block-commit", "top", "./mid.qcow2"),
                ("block-commit", "top", $"../{dirName}/mid.qcow2"),
                ("block-commit", "top", "nothere.qcow2"),
                ("block-commit", "top", "mid\0.qcow2"),
                ("block-stream", "base", dir["base.qcow2"] + "\0"),
                ("block-stream", "base", dir["base.qcow2"]),
                ("block-stream", "base", "base.qcow2"),
            ];
            answers[i] = [];
            foreach (var (command, key, name) in calls)
            {
                var args = new JsonObject { ["job-id"] = "j", ["device"] = "top", [key] = name, ["speed"] = 1 };
                var reply = await d.Qmp.SendAsync(command, args);
                if (reply["error"] is { } error)
                {
                    answers[i].Add(error["desc"]!.GetValue<string>());
                    continue;
                }

                answers[i].Add("started");
                await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
                await d.WaitStatusAsync("j", "null");
            }
        }

        Assert.Equal(answers[1], answers[0]);
        Assert.Equal(5, answers[0].Count(a => a == "started"));
    }

    /// <summary>
    /// A chain opened from its top alone has its backing files opened read-only from the headers. An
    /// intermediate commit reopens the base's file read-write for the job and read-only after it, as
    /// qemu-storage-daemon does; while another process holds the base open (qemu-io), the commit is
    /// refused with the lock error and the daemon goes on, and once that process is gone it succeeds.
    /// </summary>
    [Fact]
    public async Task CommitReopensABaseOpenedReadOnlyFromTheHeader()
    {
        using var dir = new TempDir();
        var results = new List<string>[2];
        for (var i = 0; i < 2; i++)
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "64M");
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir["mid.qcow2"]);
            await QemuIoAsync(dir["mid.qcow2"], "qcow2", "write -P 7 0 40M", "write -P 9 50M 1M");
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir["top.qcow2"]);
            await QemuImgAsync("convert", "-f", "qcow2", "-O", "raw", dir["mid.qcow2"], dir["expected.raw"]);

            var holder = Process.Start(new ProcessStartInfo("qemu-io", ["-r", "-f", "qcow2", "-c", "sleep 600000", dir["base.qcow2"]])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            try
            {
                await WaitForLockAsync(dir["base.qcow2"]);
                await using var d = await StartAsync(dir, $"d{i}", qsd: i == 1);
                await d.AddImageAsync("top", dir["top.qcow2"]);
                var args = new JsonObject { ["job-id"] = "j", ["device"] = "top", ["top"] = dir["mid.qcow2"], ["base"] = dir["base.qcow2"] };
                var refused = await d.Qmp.SendAsync("block-commit", (JsonObject)args.DeepClone());
                results[i] = [refused["error"]?["desc"]?.GetValue<string>() ?? "started while the base was held"];

                holder.Kill();
                await holder.WaitForExitAsync();
                await d.Qmp.ExecuteAsync("block-commit", args);
                var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "j");
                results[i].Add(done["error"]?.GetValue<string>() ?? "completed");
                var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
                var baseNodes = nodes.Where(n => n!["file"]!.GetValue<string>() == dir["base.qcow2"]).ToList();
                results[i].Add("base ro: " + string.Join(",", baseNodes.Select(n => n!["ro"]!.GetValue<bool>())));  // the qcow2 node and its file
                results[i].Add("base descriptors: " + string.Join(",", AccessModes(d.Process.Pid, dir["base.qcow2"])));
            }
            finally
            {
                if (!holder.HasExited)
                {
                    holder.Kill();
                }

                holder.Dispose();
            }

            var check = await Tool.RunAsync("qemu-img", "check", dir["base.qcow2"]);
            Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
            await AssertSameAsync(dir["expected.raw"], dir["base.qcow2"], "raw", "qcow2");
            var chain = (await Tool.RunAsync("qemu-img", "info", "--backing-chain", dir["top.qcow2"])).Check("qemu-img info").Stdout;
            Assert.DoesNotContain("mid.qcow2", chain);
            Assert.Contains("backing file: " + dir["base.qcow2"], chain);
        }

        Assert.Equal(results[1], results[0]);
        Assert.Contains("lock", results[0][0]);
        Assert.Equal(["completed", "base ro: True,True", "base descriptors: read-only"], results[0][1..]);
    }

    /// <summary>Waits until another process holds an OFD lock on <paramref name="path"/> (/proc/locks names its inode).</summary>
    private static async Task WaitForLockAsync(string path)
    {
        var inode = (await Tool.RunAsync("stat", "-c", "%i", path)).Check("stat").Stdout.Trim();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.ReadLines("/proc/locks").Any(l => l.Contains("OFDLCK", StringComparison.Ordinal) && l.Contains($":{inode} ", StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"nobody locked {path}");
            await Task.Delay(20);
        }
    }

    /// <summary>The access mode of every descriptor process <paramref name="pid"/> has open on <paramref name="path"/>.</summary>
    private static IEnumerable<string> AccessModes(int pid, string path) =>
        Directory.GetFiles($"/proc/{pid}/fd")
            .Where(fd => (new FileInfo(fd).LinkTarget ?? string.Empty) == path)
            .Select(fd => File.ReadLines($"/proc/{pid}/fdinfo/{Path.GetFileName(fd)}").First(l => l.StartsWith("flags:", StringComparison.Ordinal)))
            .Select(l => (Convert.ToInt32(l["flags:".Length..].Trim(), 8) & 3) switch { 0 => "read-only", 1 => "write-only", _ => "read-write" })
            .Distinct();
}
