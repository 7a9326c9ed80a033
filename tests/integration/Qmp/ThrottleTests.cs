using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// I/O throttling through the real process: throttle nodes over a file, exported over NBD and
/// measured with fio; throttle-group objects managed over QMP and the command line, with the
/// answers qemu-storage-daemon gives for the same requests.
/// </summary>
public sealed class ThrottleTests
{
    private static string Monitor(TempDir dir) => $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off";

    /// <summary>A file of random data: holes would be answered from block status without a read, as QEMU's server does.</summary>
    private static string DataImage(TempDir dir)
    {
        var path = dir["disk.raw"];
        var data = new byte[32 << 20];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static Task<Daemon> StartThrottledAsync(TempDir dir, string limits) => Daemon.StartAsync(dir,
        "--blockdev", $"driver=file,node-name=f,filename={DataImage(dir)}",
        "--object", $"throttle-group,id=g,{limits}",
        "--blockdev", "driver=throttle,node-name=t,file=f,throttle-group=g",
        "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
        "--export", "type=nbd,id=e,node-name=t,name=t");

    /// <summary>Runs fio's nbd engine for 4 s of random reads and returns its read statistics.</summary>
    private static async Task<JsonNode> FioReadAsync(TempDir dir, string blockSize)
    {
        var r = (await Tool.RunAsync("fio", ["--name=throttled", "--ioengine=nbd", $"--uri=nbd+unix:///t?socket={dir["nbd.sock"]}",
            "--rw=randread", $"--bs={blockSize}", "--iodepth=8", "--runtime=4", "--time_based", "--output-format=json"],
            TimeSpan.FromMinutes(1))).Check("fio");

        // fio's engine prints "fio: connected to NBD server" before the JSON document.
        return JsonNode.Parse(r.Stdout[r.Stdout.IndexOf('{')..])!["jobs"]![0]!["read"]!;
    }

    [Fact]
    public async Task IopsLimitHoldsUnderFio()
    {
        using var dir = new TempDir();
        await using var d = await StartThrottledAsync(dir, "limits.iops-total=50");
        var iops = (await FioReadAsync(dir, "4k"))["iops"]!.GetValue<double>();
        Assert.InRange(iops, 35, 65);
    }

    [Fact]
    public async Task BandwidthLimitHoldsUnderFio()
    {
        using var dir = new TempDir();
        const int limit = 2 << 20;
        await using var d = await StartThrottledAsync(dir, $"limits.bps-read={limit}");
        var bw = (await FioReadAsync(dir, "64k"))["bw_bytes"]!.GetValue<double>();
        Assert.InRange(bw, limit * 0.7, limit * 1.3);
    }

    [Fact]
    public async Task GroupAddedAtRunTimeThrottlesANewNodeAndCannotBeDeletedWhileUsed()
    {
        using var dir = new TempDir();
        var image = DataImage(dir);
        await using var d = await Daemon.StartAsync(dir, "--chardev", Monitor(dir), "--monitor", "chardev=m0",
            "--blockdev", $"driver=file,node-name=f,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}");
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);

        await c.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "throttle-group", ["id"] = "g", ["limits"] = new JsonObject { ["iops-total"] = 50 } });
        await c.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "throttle", ["node-name"] = "t", ["file"] = "f", ["throttle-group"] = "g" });
        await c.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e", ["node-name"] = "t", ["name"] = "t" });

        var iops = (await FioReadAsync(dir, "4k"))["iops"]!.GetValue<double>();
        Assert.InRange(iops, 35, 65);

        var node = (await c.ExecuteAsync("query-named-block-nodes")).AsArray().Single(n => n!["node-name"]!.GetValue<string>() == "t")!;
        Assert.Equal("throttle", node["drv"]!.GetValue<string>());
        Assert.Equal($$$"""json:{"throttle-group": "g", "driver": "throttle", "file": {"driver": "file", "filename": "{{{image}}}"}}""", node["file"]!.GetValue<string>());
        foreach (var field in new[] { "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr" })
        {
            // QEMU reports only a device's legacy limits here, never a throttle node's group.
            Assert.Equal(0, node[field]!.GetValue<long>());
        }

        Assert.Equal(("GenericError", "object 'g' is in use, can not be deleted"), await c.ErrorAsync("object-del", new JsonObject { ["id"] = "g" }));
        await c.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "e" });
        await c.WaitEventAsync("BLOCK_EXPORT_DELETED");
        Assert.Equal(("GenericError", "object 'g' is in use, can not be deleted"), await c.ErrorAsync("object-del", new JsonObject { ["id"] = "g" }));
        await c.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "t" });
        await c.ExecuteAsync("object-del", new JsonObject { ["id"] = "g" });
        Assert.Equal(("GenericError", "object 'g' not found"), await c.ErrorAsync("object-del", new JsonObject { ["id"] = "g" }));
        Assert.Equal(("GenericError", "Throttle group 'g' does not exist"),
            await c.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "throttle", ["node-name"] = "t", ["file"] = "f", ["throttle-group"] = "g" }));
    }

    /// <summary>Requests whose answers must be those of qemu-storage-daemon, in order, on one monitor.</summary>
    private static readonly (string Command, string Arguments)[] s_oracleScript =
    [
        ("object-add", """{"qom-type":"throttle-group","id":"g2","limits":{"iops-total":50}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"g2","limits":{"iops-total":50}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"g3","x-iops-total":50,"x-bps-total":1000}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"iops-total":-1}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"iops-total":100,"iops-total-max":50}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"bps-total":100,"bps-write":5}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"bps-read-max":5}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"iops-total":1,"iops-total-max":2,"iops-total-max-length":5000000000}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"iops-total":1,"iops-total-max":2000000000,"iops-total-max-length":500000000}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","limits":{"bogus":1}}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","x-iops-total":-1}"""),
        ("object-add", """{"qom-type":"throttle-group","id":"b","x-iops-total-max-length":5000000000}"""),
        ("blockdev-add", """{"driver":"throttle","node-name":"t2","file":"f"}"""),
        ("blockdev-add", """{"driver":"throttle","node-name":"t2","file":"f","throttle-group":"nope"}"""),
        ("blockdev-add", """{"driver":"throttle","node-name":"t2","file":"f","throttle-group":"g2","limits":{"iops-total":5}}"""),
        ("blockdev-add", """{"driver":"throttle","node-name":"t2","file":"f","throttle-group":"g2"}"""),
        ("blockdev-add", """{"driver":"throttle","node-name":"t3","file":"f","throttle-group":"g2"}"""),
        ("object-del", """{"id":"g2"}"""),
        ("blockdev-del", """{"node-name":"t2"}"""),
        ("object-del", """{"id":"g2"}"""),
        ("blockdev-del", """{"node-name":"t3"}"""),
        ("object-del", """{"id":"g2"}"""),
        ("object-del", """{"id":"g2"}"""),
        ("block_set_io_throttle", """{"device":"f","bps":0,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}"""),
        ("block_set_io_throttle", """{"id":"t","bps":1000,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0,"group":"g"}"""),
    ];

    [Fact]
    public async Task QmpAnswersMatchQemuStorageDaemon()
    {
        using var dir = new TempDir();
        var image = DataImage(dir);
        string[] args = ["--chardev", Monitor(dir), "--monitor", "chardev=m0", "--blockdev", $"driver=file,node-name=f,filename={image},force-share=on,read-only=on"];

        async Task<List<string>> RunAsync(Func<TempDir, string[], Task<Daemon>> start)
        {
            await using var d = await start(dir, args);
            await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);
            var answers = new List<string>();
            foreach (var (command, arguments) in s_oracleScript)
            {
                var reply = await c.SendAsync(command, JsonNode.Parse(arguments)!.AsObject());
                answers.Add($"{command} {arguments} -> " + (reply["error"] is { } e ? $"{e["class"]}: {e["desc"]}" : "ok"));
            }

            return answers;
        }

        var theirs = await RunAsync(Daemon.StartQsdAsync);
        var ours = await RunAsync(Daemon.StartAsync);
        Assert.Equal(string.Join("\n", theirs), string.Join("\n", ours));
    }

    [Theory]
    [InlineData("limits.iops-total=-1")]
    [InlineData("limits.iops-total=100,limits.iops-total-max=50")]
    [InlineData("limits.bps-total=100,limits.bps-read=10")]
    [InlineData("limits.iops-total-max=50")]
    [InlineData("limits.iops-total=100,limits.iops-total-max-length=0")]
    [InlineData("limits.iops-total-max-length=5")]
    [InlineData("limits.iops-size=4096")]
    [InlineData("limits.iops-total=abc")]
    [InlineData("x-iops-total=-5")]
    [InlineData("x-bps-read=1,x-bps-total=1")]
    public async Task BadLimitsOnTheCommandLineFailAsInQemuStorageDaemon(string limits)
    {
        string[] args = ["--object", $"throttle-group,id=g,{limits}"];
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        var theirs = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", args, TimeSpan.FromSeconds(30));
        Assert.Equal(1, theirs.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(theirs.Stderr.Replace("qemu-storage-daemon:", "export-server:", StringComparison.Ordinal).Trim(), ours.Stderr.Trim());
    }
}
