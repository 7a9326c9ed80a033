using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Daemon;
using Xunit;

namespace ExportServer.UnitTests.Qmp;

/// <summary>Graph, export, snapshot, transaction and job commands against in-memory nodes.</summary>
public sealed class GraphCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qmp-unit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private async Task StartNbdAsync(QmpHarness h) =>
        await h.OkAsync("nbd-server-start", "{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"" + Path.Combine(_dir, "nbd.sock") + "\"}}}");

    [Fact]
    public async Task NamedNodesHaveQemuKeys()
    {
        await using var h = new QmpHarness();
        await h.OkAsync("blockdev-add", """{"driver":"memory","node-name":"m","size":65536}""");
        var info = (JsonObject)((JsonArray)await h.OkAsync("query-named-block-nodes", """{"flat":true}"""))[0]!;
        string[] keys = ["file", "node-name", "ro", "drv", "backing_file_depth", "encrypted", "detect_zeroes", "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr", "image", "cache", "write_threshold"];
        Assert.Equal(keys.Order(), info.Select(p => p.Key).Order());
        Assert.Equal(["actual-size", "filename", "format", "virtual-size"], ((JsonObject)info["image"]!).Select(p => p.Key).Order());
        Assert.Equal(65536, info["image"]!["virtual-size"]!.GetValue<long>());
        Assert.Equal(["direct", "no-flush", "writeback"], ((JsonObject)info["cache"]!).Select(p => p.Key).Order());
    }

    [Fact]
    public async Task WriteThresholdFiresOnceAndShowsInQuery()
    {
        await using var h = new QmpHarness();
        await h.OkAsync("blockdev-add", """{"driver":"memory","node-name":"m","size":65536}""");
        await h.OkAsync("block-set-write-threshold", """{"node-name":"m","write-threshold":4096}""");
        Assert.Equal(4096, (await h.OkAsync("query-named-block-nodes"))[0]!["write_threshold"]!.GetValue<long>());
        var node = h.Daemon.Graph.Find("m");
        await node.WriteAsync(0, new byte[4096]);
        Assert.Empty(h.Events);
        await node.WriteAsync(4000, new byte[200]);
        await node.WriteAsync(8192, new byte[200]);
        var e = Assert.Single(h.Events);
        Assert.Equal("BLOCK_WRITE_THRESHOLD", e.Name);
        Assert.Equal(104, e.Data!["amount-exceeded"]!.GetValue<long>());
        Assert.Equal(0, (await h.OkAsync("query-named-block-nodes"))[0]!["write_threshold"]!.GetValue<long>());
        Assert.Equal(("GenericError", "Device 'x' not found"), await h.FailAsync("block-set-write-threshold", """{"node-name":"x","write-threshold":1}"""));
    }

    [Fact]
    public async Task ExportsAddListDeleteWithEventAndBusyNode()
    {
        await using var h = new QmpHarness();
        await StartNbdAsync(h);
        await h.OkAsync("blockdev-add", """{"driver":"memory","node-name":"m"}""");
        await h.OkAsync("block-export-add", """{"type":"nbd","id":"e1","node-name":"m","writable":true}""");
        await h.OkAsync("nbd-server-add", """{"device":"m","name":"n2"}""");
        var list = (JsonArray)await h.OkAsync("query-block-exports");
        Assert.Equal(["n2", "e1"], list.Select(e => e!["id"]!.GetValue<string>()));
        Assert.Equal(["id", "node-name", "shutting-down", "type"], ((JsonObject)list[0]!).Select(p => p.Key).Order());
        Assert.Equal("Node m is in use", (await h.FailAsync("blockdev-del", """{"node-name":"m"}""")).Desc);
        await h.OkAsync("nbd-server-remove", """{"name":"n2"}""");
        Assert.Equal("Export 'n2' is not found", (await h.FailAsync("nbd-server-remove", """{"name":"n2"}""")).Desc);
        await h.OkAsync("block-export-del", """{"id":"e1"}""");
        Assert.Equal(["n2", "e1"], h.Events.Where(e => e.Name == "BLOCK_EXPORT_DELETED").Select(e => e.Data!["id"]!.GetValue<string>()));
        await h.OkAsync("blockdev-del", """{"node-name":"m"}""");
        await h.OkAsync("nbd-server-stop");
        Assert.Equal("NBD server not running", (await h.FailAsync("nbd-server-stop")).Desc);
    }

    [Fact]
    public async Task SnapshotMovesTheExportToTheOverlay()
    {
        await using var h = new QmpHarness();
        await StartNbdAsync(h);
        await h.OkAsync("blockdev-add", """{"driver":"overlay","node-name":"base","size":4096}""");
        await h.OkAsync("block-export-add", """{"type":"nbd","id":"e","node-name":"base","writable":true}""");
        var root = h.Daemon.Exports.All.Single().Root;
        await root.WriteAsync(0, new byte[] { 1 });
        await h.OkAsync("blockdev-add", """{"driver":"overlay","node-name":"top","size":4096,"backing":null}""");
        await h.OkAsync("blockdev-snapshot", """{"node":"base","overlay":"top"}""");
        Assert.Equal("top", (await h.OkAsync("query-block-exports"))[0]!["node-name"]!.GetValue<string>());
        await root.WriteAsync(1, new byte[] { 2 });
        var top = (OverlayNode)h.Daemon.Graph.Find("top");
        var buf = new byte[2];
        await top.ReadAsync(0, buf);
        Assert.Equal(new byte[] { 1, 2 }, buf);
        Assert.True(top.Wrote(1));
        Assert.False(top.Wrote(0));
        Assert.True(h.Daemon.Graph.Find("base").IsReadOnly);
        var info = (await h.OkAsync("query-named-block-nodes")).AsArray().Single(n => n!["node-name"]!.GetValue<string>() == "top")!;
        Assert.Equal(1, info["backing_file_depth"]!.GetValue<int>());
        Assert.Equal("overlay", info["image"]!["backing-image"]!["format"]!.GetValue<string>());

        // Flat output stops at each node's own layer, depth included (QEMU reports 0 there).
        var flat = (await h.OkAsync("query-named-block-nodes", """{"flat":true}""")).AsArray().Single(n => n!["node-name"]!.GetValue<string>() == "top")!;
        Assert.Equal(0, flat["backing_file_depth"]!.GetValue<int>());
        Assert.Null(flat["image"]!["backing-image"]);
    }

    [Fact]
    public async Task FailedSecondActionLeavesBothNodesAsTheyWere()
    {
        await using var h = new QmpHarness();
        await h.OkAsync("blockdev-add", """{"driver":"overlay","node-name":"a","size":4096}""");
        await h.OkAsync("blockdev-add", """{"driver":"overlay","node-name":"b","size":4096}""");
        await h.OkAsync("blockdev-add", """{"driver":"overlay","node-name":"oa","size":4096,"backing":null}""");
        var (_, desc) = await h.FailAsync("transaction", """
            {"actions":[
              {"type":"blockdev-snapshot","data":{"node":"a","overlay":"oa"}},
              {"type":"blockdev-snapshot-sync","data":{"node-name":"b","snapshot-file":"/nonexistent/dir/x.qcow2","format":"nope"}}]}
            """);
        Assert.Equal("Unknown driver 'nope'", desc);
        Assert.Null(h.Daemon.Graph.Find("oa").BackingChild);
        Assert.False(h.Daemon.Graph.Find("a").IsReadOnly);
        Assert.Equal(["a", "b", "oa"], h.Daemon.Graph.Nodes.Select(n => n.NodeName));
    }

    [Fact]
    public async Task ReopenTogglesReadOnlyAndResizeChangesSize()
    {
        await using var h = new QmpHarness();
        await h.OkAsync("blockdev-add", """{"driver":"memory","node-name":"m","size":4096}""");
        await h.OkAsync("blockdev-reopen", """{"options":[{"driver":"memory","node-name":"m","read-only":true}]}""");
        Assert.True((await h.OkAsync("query-named-block-nodes"))[0]!["ro"]!.GetValue<bool>());
        Assert.Equal("Cannot change the option 'driver'", (await h.FailAsync("blockdev-reopen", """{"options":[{"driver":"file","node-name":"m"}]}""")).Desc);
        await h.OkAsync("blockdev-reopen", """{"options":[{"driver":"memory","node-name":"m"}]}""");
        Assert.False(h.Daemon.Graph.Find("m").IsReadOnly);
        await h.OkAsync("block_resize", """{"node-name":"m","size":8192}""");
        Assert.Equal(8192, h.Daemon.Graph.Find("m").Length);
    }

    [Fact]
    public async Task BlockdevCreateRunsAJobThroughItsStates()
    {
        await using var h = new QmpHarness();
        var file = Path.Combine(_dir, "new.raw");
        await h.OkAsync("blockdev-create", $$$"""{"job-id":"j","options":{"driver":"file","filename":"{{{file}}}","size":1048576}}""");
        for (var i = 0; i < 100 && (await h.OkAsync("query-jobs"))[0]!["status"]!.GetValue<string>() != "concluded"; i++)
        {
            await Task.Delay(20);
        }

        Assert.Equal(1048576, new FileInfo(file).Length);
        Assert.Equal("Job ID 'j' already in use", (await h.FailAsync("blockdev-create", """{"job-id":"j","options":{"driver":"file","filename":"x","size":1}}""")).Desc);
        await h.OkAsync("job-dismiss", """{"id":"j"}""");
        Assert.Empty((JsonArray)await h.OkAsync("query-jobs"));
        var states = h.Events.Where(e => e.Name == "JOB_STATUS_CHANGE").Select(e => e.Data!["status"]!.GetValue<string>());
        Assert.Equal(["created", "running", "waiting", "pending", "concluded", "null"], states);
    }
}
