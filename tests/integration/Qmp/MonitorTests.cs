using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>The QMP monitor of the real export-server process, driven over its unix socket.</summary>
public sealed class MonitorTests
{
    private static Task<Daemon> StartAsync(TempDir dir, params string[] extra) => Daemon.StartAsync(dir,
    [
        "--chardev", $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off", "--monitor", "chardev=m0",
        "--chardev", $"socket,id=m1,path={dir["m1.sock"]},server=on,wait=off", "--monitor", "chardev=m1",
        .. extra,
    ]);

    [Fact]
    public async Task GreetingNegotiationAndIdEcho()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir);
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"], negotiate: false);
        Assert.Equal(7, c.Greeting["QMP"]!["version"]!["qemu"]!["major"]!.GetValue<int>());
        Assert.Equal(2, c.Greeting["QMP"]!["version"]!["qemu"]!["minor"]!.GetValue<int>());
        Assert.Equal("oob", c.Greeting["QMP"]!["capabilities"]![0]!.GetValue<string>());
        Assert.Equal(("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"), await c.ErrorAsync("query-version"));
        var ok = await c.SendRawAsync("""{"execute":"qmp_capabilities","id":"neg"}""");
        Assert.Equal("neg", ok["id"]!.GetValue<string>());
        Assert.Equal(("CommandNotFound", "Capabilities negotiation is already complete, command ignored"), await c.ErrorAsync("qmp_capabilities"));
        var two = await c.SendRawAsync("""{"execute":"query-version","id":1} {"execute":"query-version","id":2}""");
        Assert.Equal(1, two["id"]!.GetValue<int>());
        Assert.Equal(2, (await c.ReadAsync())["id"]!.GetValue<int>());
    }

    [Fact]
    public async Task BadInputIsAnsweredAndTheMonitorKeepsWorking()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir);
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);
        (string Raw, string Desc)[] cases =
        [
            ("}", "JSON parse error, expecting value"),
            ("[1]", "QMP input must be a JSON object"),
            ("""{"execute":"query-version","bogus":1}""", "QMP input member 'bogus' is unexpected"),
            ("""{"execute":"block_resize","arguments":{"node-name":"n","size":"1"}}""", "Invalid parameter type for 'size', expected: integer"),
            ("""{"execute":"block_resize","arguments":{"node-name":"n"}}""", "Parameter 'size' is missing"),
            ("""{"execute":"blockdev-del","arguments":{"node-name":"n","force":true}}""", "Parameter 'force' is unexpected"),
            ("""{"execute":"blockdev-add","arguments":{"driver":"nope","node-name":"n"}}""", "Parameter 'driver' does not accept value 'nope'"),
            ("""{"execute":"nbd-server-add","arguments":{"device":"n"}}""", "NBD server not running"),
            ("""{"execute":"block-export-del","arguments":{"id":"e"}}""", "Export 'e' is not found"),
            ("""{"execute":"transaction","arguments":{"actions":[{"type":"abort","data":{}}]}}""", "Transaction aborted using Abort action"),
            ("""{"execute":"blockdev-snapshot-sync","arguments":{"node-name":"n","snapshot-file":"/x"}}""", "Cannot find device='' nor node-name='n'"),
        ];
        foreach (var (raw, desc) in cases)
        {
            var reply = await c.SendRawAsync(raw);
            Assert.Equal("GenericError", reply["error"]?["class"]?.GetValue<string>());
            Assert.Equal(desc, reply["error"]!["desc"]!.GetValue<string>());
        }

        Assert.Equal(("CommandNotFound", "The command nope has not been found"), await c.ErrorAsync("nope"));
        Assert.Equal(7, (await c.ExecuteAsync("query-version"))["qemu"]!["major"]!.GetValue<int>());
        Assert.False(d.HasExited);
    }

    [Fact]
    public async Task TwoMonitorsAtOnceBothGetEvents()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir);
        await using var a = await QmpClient.ConnectAsync(dir["m0.sock"]);
        await using var b = await QmpClient.ConnectAsync(dir["m1.sock"]);
        var file = dir["created.raw"];
        await a.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = "j0", ["options"] = new JsonObject { ["driver"] = "file", ["filename"] = file, ["size"] = 1 << 20 } });
        foreach (var c in new[] { a, b })
        {
            await c.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["status"]!.GetValue<string>() == "concluded");
        }

        var jobs = (JsonArray)await b.ExecuteAsync("query-jobs");
        Assert.Equal("concluded", jobs[0]!["status"]!.GetValue<string>());
        Assert.Equal("create", jobs[0]!["type"]!.GetValue<string>());
        await b.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = "j0" });
        var gone = await a.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["status"]!.GetValue<string>() == "null");
        Assert.True(gone["timestamp"]!["seconds"]!.GetValue<long>() > 0);
        Assert.Equal(1 << 20, new FileInfo(file).Length);
        var info = await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", file);
        Assert.Contains("\"format\": \"raw\"", info.Stdout);
    }

    [Fact]
    public async Task OneClientAtATimeThenTheNextAndQuit()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir);
        await using (var first = await QmpClient.ConnectAsync(dir["m0.sock"]))
        {
            await first.ExecuteAsync("query-version");
        }

        await using var second = await QmpClient.ConnectAsync(dir["m0.sock"]);
        var names = ((JsonArray)await second.ExecuteAsync("query-commands")).Select(n => n!["name"]!.GetValue<string>()).ToList();
        Assert.Contains("blockdev-snapshot-sync", names);
        Assert.Contains("x-blockdev-del", names);
        var schema = (JsonArray)await second.ExecuteAsync("query-qmp-schema");
        Assert.Contains(schema, e => e!["name"]!.GetValue<string>() == "q_obj_nbd-server-start-arg");
        await second.ExecuteAsync("quit");
        for (var i = 0; i < 100 && !d.HasExited; i++)
        {
            await Task.Delay(50);
        }

        Assert.True(d.HasExited);
        Assert.False(File.Exists(dir["m0.sock"]));
    }
}
