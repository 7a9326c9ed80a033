using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Options;

/// <summary>
/// Options that used to be read and dropped: each is refused with qemu-storage-daemon's words or
/// honoured with the effect qemu-storage-daemon has, seen from outside (qemu-img map, the blocks the
/// image file holds, an NBD server's request log).
/// </summary>
public sealed class NodeOptionTests
{
    private const string Image = "@IMG@";
    private const string Qcow2 = $"driver=qcow2,node-name=n,file.driver=file,file.filename={Image}";

    public static TheoryData<string[]> Refused => new()
    {
        new[] { "--blockdev", Qcow2 + ",cache.writeback=off" },
        new[] { "--blockdev", Qcow2 + ",detect-zeroes=unmap" },
        new[] { "--blockdev", Qcow2 + ",detect-zeroes=unmap,discard=ignore" },
        new[] { "--blockdev", Qcow2 + ",file.pr-manager=pr0" },
        new[] { "--blockdev", Qcow2 + ",overlap-check=sometimes" },
        new[] { "--blockdev", Qcow2 + ",overlap-check.template=some" },
        new[] { "--blockdev", Qcow2 + ",l2-cache-entry-size=1000" },
        new[] { "--blockdev", Qcow2 + ",l2-cache-entry-size=128k" },
        new[] { "--blockdev", Qcow2 + ",encrypt.format=luks,encrypt.key-secret=s" },
        new[] { "--object", "iothread,id=i,poll-max-ns=-1" },
        new[] { "--object", "iothread,id=i,poll-shrink=-1,poll-grow=-2" },
        new[] { "--object", "iothread,id=i,thread-pool-min=100" },
        new[] { "--object", "iothread,id=i,thread-pool-max=0" },
        new[] { "--nbd-server", "addr.type=inet,addr.host=localhost,addr.port=1,addr.numeric=on" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task RefusedWithQemuStorageDaemonsWords(string[] template)
    {
        using var dir = new TempDir();
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", dir["a.qcow2"], "64M")).Check("create");
        var args = template.Select(a => a.Replace(Image, dir["a.qcow2"], StringComparison.Ordinal)).ToArray();

        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        var theirs = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", args, TimeSpan.FromSeconds(30));

        Assert.NotEqual(0, theirs.ExitCode);
        Assert.NotEqual(0, ours.ExitCode);
        Assert.Equal(theirs.Stderr.Replace("qemu-storage-daemon:", "export-server:", StringComparison.Ordinal).Trim(), ours.Stderr.Trim());
    }

    /// <summary>Options that qemu-storage-daemon takes and that change nothing visible: both start and serve.</summary>
    public static TheoryData<string> Accepted => new()
    {
        Qcow2 + ",overlap-check=none,l2-cache-entry-size=4096",
        Qcow2 + ",overlap-check.template=all,overlap-check.main-header=off",
        Qcow2 + ",file.aio=io_uring,file.aio-max-batch=16,file.drop-cache=off",
        Qcow2 + ",pass-discard-other=on,pass-discard-snapshot=off",
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public async Task AcceptedAsByQemuStorageDaemon(string blockdev)
    {
        foreach (var qsd in (bool[])[false, true])
        {
            using var dir = new TempDir();
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", dir["a.qcow2"], "64M")).Check("create");
            string[] args =
            [
                "--object", "iothread,id=io0,poll-max-ns=0,poll-grow=2,poll-shrink=0,aio-max-batch=4,thread-pool-min=1,thread-pool-max=8",
                "--blockdev", blockdev.Replace(Image, dir["a.qcow2"], StringComparison.Ordinal),
                "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]},tls-authz=authz0",
                "--export", "type=nbd,id=e,node-name=n,name=n,writable=on,iothread=io0,fixed-iothread=on",
            ];
            await using var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args);
            (await Tool.RunAsync("qemu-io", "-f", "raw", $"nbd+unix:///n?socket={dir["s.sock"]}", "-c", "write -P 5 0 64k", "-c", "read -P 5 0 64k")).Check("qemu-io");
        }
    }

    /// <summary>qemu-img map of an image after qemu-io commands ran through an export of it, with the image file's allocated bytes.</summary>
    private static async Task<(string Map, long Blocks)> RunAsync(bool qsd, string nodeOptions, string[] commands, string create = "")
    {
        using var dir = new TempDir();
        var image = dir["t.qcow2"];
        (await Tool.ShAsync($"qemu-img create -q -f qcow2 {create} {image} 64M")).Check("create");
        string[] args =
        [
            "--blockdev", $"driver=qcow2,node-name=n,{nodeOptions}file.driver=file,file.filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e,node-name=n,writable=on",
        ];
        await using (var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args))
        {
            (await Tool.RunAsync("qemu-io", ["-f", "raw", $"nbd+unix:///n?socket={dir["s.sock"]}", .. commands.SelectMany(c => new[] { "-c", c })])).Check("qemu-io");
            Assert.Equal(0, await d.StopAsync());
        }

        var check = await Tool.RunAsync("qemu-img", "check", image);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        // Where a cluster lands in the file is each implementation's own choice; whether it has one is not.
        var map = (await Tool.RunAsync("qemu-img", "map", "--output=json", image)).Check("map").Stdout;
        map = Regex.Replace(map, "\"offset\": \\d+", "\"offset\": 0");
        return (map, new FileInfo(image).Length > 0 ? AllocatedBytes(image) : 0);
    }

    private static long AllocatedBytes(string path)
    {
        var stat = Tool.RunAsync("stat", "-c", "%b", path).GetAwaiter().GetResult().Check("stat");
        return long.Parse(stat.Stdout.Trim()) * 512;
    }

    private static JsonArray Extents(string map) => JsonNode.Parse(map)!.AsArray();

    [Theory]
    [InlineData("detect-zeroes=on,")]
    [InlineData("detect-zeroes=unmap,discard=unmap,")]
    [InlineData("detect-zeroes=off,")]
    public async Task DetectZeroesMapsAsInQemuStorageDaemon(string options)
    {
        string[] commands = ["write -P 7 0 1M", "write -P 0 0 512k", "write -P 0 2M 1M"];

        var ours = await RunAsync(qsd: false, options, commands);
        var theirs = await RunAsync(qsd: true, options, commands);

        Assert.Equal(theirs.Map, ours.Map);
        var zeroWrite = Extents(ours.Map).Single(e => (long)e!["start"]! == 2L << 20);
        Assert.Equal(!options.Contains("=off", StringComparison.Ordinal), !(bool)zeroWrite!["data"]!);
    }

    [Fact]
    public async Task DetectZeroesUnmapFreesTheClusterItZeroes()
    {
        string[] commands = ["write -P 7 0 4M", "write -P 0 0 4M"];

        var unmapped = await RunAsync(qsd: false, "detect-zeroes=unmap,discard=unmap,", commands);
        var kept = await RunAsync(qsd: false, "detect-zeroes=on,discard=unmap,", commands);

        Assert.True(kept.Blocks - unmapped.Blocks >= 3L << 20, $"unmap {unmapped.Blocks}, on {kept.Blocks}");
    }

    [Theory]
    [InlineData("pass-discard-request=on,")]
    [InlineData("pass-discard-request=off,")]
    [InlineData("")]
    public async Task PassDiscardRequestDecidesWhetherTheFileIsPunched(string options)
    {
        string[] commands = ["write -P 1 0 4M", "discard 0 4M", "write -P 2 8M 1M", "write -z -u 8M 1M"];

        var ours = await RunAsync(qsd: false, "discard=unmap," + options, commands);
        var theirs = await RunAsync(qsd: true, "discard=unmap," + options, commands);

        Assert.Equal(theirs.Map, ours.Map);
        var punched = !options.Contains("=off", StringComparison.Ordinal);
        Assert.Equal(punched, ours.Blocks < 2L << 20);
        Assert.Equal(punched, theirs.Blocks < 2L << 20);
    }

    [Fact]
    public async Task DiscardNoUnrefKeepsClustersAllocatedAndReusesThem()
    {
        string[] commands = ["write -P 1 0 4M", "discard 0 4M", "write -P 3 8M 1M", "write -z -u 8M 1M"];

        var kept = await RunAsync(qsd: false, "discard=unmap,discard-no-unref=on,", commands);
        var freed = await RunAsync(qsd: false, "discard=unmap,", commands);

        // Both read as zeroes; only without discard-no-unref do the clusters go back to the free pool.
        var keptExtents = Extents(kept.Map).Where(e => (long)e!["start"]! < 9L << 20 && (bool)e!["present"]!).ToList();
        Assert.All(keptExtents, e => Assert.True((bool)e!["zero"]! && e["offset"] is not null, e!.ToJsonString()));
        Assert.Equal(5L << 20, keptExtents.Sum(e => (long)e!["length"]!));
        Assert.DoesNotContain(Extents(freed.Map), e => e!["offset"] is not null);

        // The bytes are still discarded in the file (pass-discard-request follows discard=unmap).
        Assert.True(kept.Blocks < 2L << 20, $"{kept.Blocks}");
    }

    [Theory]
    [InlineData("", true)]
    [InlineData("pass-discard-snapshot=off,", false)]
    public async Task PassDiscardSnapshotPunchesWhatADeletedSnapshotHeld(string options, bool punched)
    {
        foreach (var qsd in (bool[])[false, true])
        {
            using var dir = new TempDir();
            var image = dir["t.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "64M")).Check("create");
            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4M", image)).Check("fill");
            (await Tool.RunAsync("qemu-img", "snapshot", "-c", "s1", image)).Check("snapshot");
            string[] args =
            [
                "--chardev", $"socket,id=m,path={dir["m.sock"]},server=on,wait=off", "--monitor", "chardev=m",
                "--blockdev", $"driver=qcow2,node-name=n,discard=unmap,{options}file.driver=file,file.filename={image}",
                "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
                "--export", "type=nbd,id=e,node-name=n,writable=on",
            ];
            await using (var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args))
            {
                (await Tool.RunAsync("qemu-io", "-f", "raw", $"nbd+unix:///n?socket={dir["s.sock"]}", "-c", "write -P 2 0 4M")).Check("rewrite");
                await using var qmp = await Qmp.QmpClient.ConnectAsync(dir["m.sock"]);
                await qmp.ExecuteAsync("blockdev-snapshot-delete-internal-sync", new JsonObject { ["device"] = "n", ["name"] = "s1" });
                Assert.Equal(0, await d.StopAsync());
            }

            (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
            var blocks = AllocatedBytes(image);
            Assert.True(punched == blocks < 6L << 20, $"{(qsd ? "qemu-storage-daemon" : "ours")}: {blocks} bytes allocated");
        }
    }

    [Fact]
    public async Task DiscardNoUnrefNeedsVersion3()
    {
        using var dir = new TempDir();
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", dir["v2.qcow2"], "1M")).Check("create");

        var run = await Tool.RunAsync(Daemon.ExportServerPath, "--blockdev", $"driver=qcow2,node-name=n,discard-no-unref=on,file.driver=file,file.filename={dir["v2.qcow2"]}");

        Assert.NotEqual(0, run.ExitCode);
        Assert.EndsWith(": discard-no-unref is only supported since qcow2 version 3", run.Stderr.Trim());
    }
}
