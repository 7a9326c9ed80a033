using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// Checkpoint rotation (x-block-dirty-bitmap-rotate and the bitmap-rotate subcommand) over two
/// disks: each checkpoint bitmap holds exactly the granules written while it recorded, a failure on
/// one disk leaves both as they were, and folding an older checkpoint in gives their union.
/// </summary>
public sealed class BitmapRotateTests
{
    private static JsonObject Args(string json) => (JsonObject)JsonNode.Parse(json)!;

    /// <summary>"name recording count granularity persistent" for each bitmap of the node, newest first.</summary>
    private static async Task<string> SummaryAsync(BitmapDaemon d, string node)
    {
        var bitmaps = await d.BitmapsAsync(node) as JsonArray ?? [];
        return string.Join(", ", bitmaps.Select(b =>
            $"{b!["name"]} {b["recording"]} {b["count"]} {b["granularity"]} {b["persistent"]}"));
    }

    [Fact]
    public async Task RotationStartsANewCheckpointOnEveryDiskAtOnce()
    {
        using var dir = new TempDir();
        var image = dir["a.qcow2"];
        var second = dir["b.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create a");
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", second, "16M")).Check("create b");
        await using var d = await BitmapDaemon.StartAsync(dir, false, image, "",
            "--blockdev", $"driver=qcow2,node-name=fmt2,file.driver=file,file.filename={second}",
            "--export", "type=nbd,id=e1,node-name=fmt2,name=disk2,writable=on",
            "--chardev", $"socket,id=m1,path={dir["cli-qmp.sock"]},server=on,wait=off", "--monitor", "chardev=m1");
        await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", Args("""{"node":"fmt","name":"cp1","persistent":true}"""));
        await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", Args("""{"node":"fmt2","name":"cp1","granularity":4096}"""));
        await d.WriteAsync("write 0 64k");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write 1M 8k", d.Uri("disk2"))).Check("write disk2");

        await d.Qmp.ExecuteAsync("x-block-dirty-bitmap-rotate", Args("""{"nodes":["fmt","fmt2"],"current":"cp1","new":"cp2"}"""));
        Assert.Equal("cp2 true 0 65536 true, cp1 false 65536 65536 true", await SummaryAsync(d, "fmt"));
        Assert.Equal("cp2 true 0 4096 false, cp1 false 8192 4096 false", await SummaryAsync(d, "fmt2"));

        // Writes after the rotation go to the new checkpoint only.
        await d.WriteAsync("write 2M 128k");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write 3M 4k", d.Uri("disk2"))).Check("write disk2");
        Assert.Equal("cp2 true 131072 65536 true, cp1 false 65536 65536 true", await SummaryAsync(d, "fmt"));
        Assert.Equal("cp2 true 4096 4096 false, cp1 false 8192 4096 false", await SummaryAsync(d, "fmt2"));

        // One disk cannot rotate (cp3 exists there): neither does, and the error is the add's.
        await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", Args("""{"node":"fmt2","name":"cp3"}"""));
        var before = (await SummaryAsync(d, "fmt"), await SummaryAsync(d, "fmt2"));
        var (_, desc) = await d.Qmp.ErrorAsync("x-block-dirty-bitmap-rotate", Args("""{"nodes":["fmt","fmt2"],"current":"cp2","new":"cp3"}"""));
        Assert.Equal("Bitmap already exists: cp3", desc);
        Assert.Equal(before, (await SummaryAsync(d, "fmt"), await SummaryAsync(d, "fmt2")));
        await d.Qmp.ExecuteAsync("block-dirty-bitmap-remove", Args("""{"node":"fmt2","name":"cp3"}"""));
        before = (await SummaryAsync(d, "fmt"), await SummaryAsync(d, "fmt2"));

        // Bad input: each refused with its reason, nothing changed, the daemon still answering.
        foreach (var (args, expected) in new[]
        {
            ("""{"nodes":[],"current":"cp2","new":"cp3"}""", "Parameter 'nodes' must name at least one node"),
            ("""{"nodes":[7],"current":"cp2","new":"cp3"}""", "Invalid parameter type for 'nodes[0]', expected: string"),
            ("""{"nodes":["nope"],"current":"cp2","new":"cp3"}""", "Cannot find device='nope' nor node-name='nope'"),
            ("""{"nodes":["fmt"],"current":"zz","new":"cp3"}""", "Dirty bitmap 'zz' not found"),
            ("""{"nodes":["fmt"],"current":"cp1","new":"cp3"}""", "Bitmap 'cp1' of node 'fmt' is not recording: it is not the current checkpoint"),
            ("""{"nodes":["fmt"],"current":"cp2","new":"cp3","merge":["zz"]}""", "Dirty bitmap 'zz' not found"),
            ("""{"nodes":["fmt"],"current":"cp2"}""", "Parameter 'new' is missing"),
        })
        {
            Assert.Equal(expected, (await d.Qmp.ErrorAsync("x-block-dirty-bitmap-rotate", Args(args))).Desc);
        }

        Assert.Equal(before, (await SummaryAsync(d, "fmt"), await SummaryAsync(d, "fmt2")));

        // The subcommand, folding the older checkpoint in: cp2 becomes everything since cp1 began.
        var socket = dir["cli-qmp.sock"];
        var cli = await Tool.RunAsync(Daemon.ExportServerPath, "bitmap-rotate", "--qmp", socket, "--current", "cp2", "--new", "cp3", "--merge", "cp1", "fmt", "fmt2");
        Assert.True(cli.ExitCode == 0, cli.Stderr);
        Assert.Equal("cp3 true 0 65536 true, cp2 false 196608 65536 true", await SummaryAsync(d, "fmt"));
        Assert.Equal("cp3 true 0 4096 false, cp2 false 12288 4096 false", await SummaryAsync(d, "fmt2"));
        var refused = await Tool.RunAsync(Daemon.ExportServerPath, "bitmap-rotate", "--qmp", socket, "--current", "cp2", "--new", "cp4", "fmt");
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal("export-server: Bitmap 'cp2' of node 'fmt' is not recording: it is not the current checkpoint", refused.Stderr.Trim());
        var usage = await Tool.RunAsync(Daemon.ExportServerPath, "bitmap-rotate", "--qmp", socket, "fmt");
        Assert.Equal(1, usage.ExitCode);
        Assert.StartsWith("export-server: usage: bitmap-rotate", usage.Stderr, StringComparison.Ordinal);

        var schema = (JsonArray)await d.Qmp.ExecuteAsync("query-qmp-schema");
        Assert.Contains(schema, e => e!["name"]!.GetValue<string>() == "x-block-dirty-bitmap-rotate" && e["meta-type"]!.GetValue<string>() == "command");

        // The persistent checkpoints are stored as QEMU stores them.
        Assert.Equal(0, await d.StopAsync());
        var info = (await Tool.RunAsync("qemu-img", "info", "--output=json", image)).Check("info").Stdout;
        Assert.Contains("\"cp3\"", info, StringComparison.Ordinal);
        Assert.Contains("\"cp2\"", info, StringComparison.Ordinal);
        Assert.DoesNotContain("\"cp1\"", info, StringComparison.Ordinal);
        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
    }
}
