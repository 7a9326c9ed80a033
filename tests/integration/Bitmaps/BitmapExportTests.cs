using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// qemu:dirty-bitmap:NAME over NBD: offered through --export …,bitmaps.0=NAME and block-export-add
/// 'bitmaps', the map equal to the granules written, the bitmap busy while exported; every step
/// compared with qemu-storage-daemon.
/// </summary>
public sealed class BitmapExportTests
{
    private static JsonObject Args(string json) => (JsonObject)JsonNode.Parse(json)!;

    [Fact]
    public async Task PullModeMapsEqualTheGranulesWrittenAsInQemu()
    {
        using var dir = new TempDir();
        var results = new Dictionary<bool, List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            var replies = results[qsd] = [];
            var image = dir[qsd ? "qsd.qcow2" : "es.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "32M")).Check("create");
            (await Tool.RunAsync("qemu-img", "bitmap", "--add", "-g", "65536", image, "live")).Check("bitmap add");
            await using var d = await BitmapDaemon.StartAsync(dir, qsd, image, "",
                "--export", "type=nbd,id=e1,node-name=fmt,name=live,writable=on,bitmaps.0=live");
            await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", Args("""{"node":"fmt","name":"b0","granularity":65536}"""));
            await d.WriteAsync("write 0 4k", "write 5M 200k", "write -z 20M 64k", "write 32767k 1k");
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"fmt","name":"pull","bitmaps":["b0"]}""")));
            replies.Add(await d.ReplyAsync("block-dirty-bitmap-disable", Args("""{"node":"fmt","name":"b0"}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"fmt","name":"pull","bitmaps":["nope"]}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"fmt","name":"pull","bitmaps":[{"node":"fmt","name":"b0"}]}""")));
            replies.Add(await BitmapDaemon.MapAsync(d.Uri("pull"), "qemu:dirty-bitmap:b0"));
            replies.Add((await d.BitmapsAsync())!.ToJsonString());
            replies.Add(await d.ReplyAsync("block-dirty-bitmap-clear", Args("""{"node":"fmt","name":"b0"}""")));
            replies.Add(await d.ReplyAsync("block-dirty-bitmap-remove", Args("""{"node":"fmt","name":"b0"}""")));
            replies.Add(await d.ReplyAsync("block-export-del", Args("""{"id":"e2"}""")));
            await Task.Delay(300);
            replies.Add(await d.ReplyAsync("block-dirty-bitmap-clear", Args("""{"node":"fmt","name":"b0"}""")));

            // The bitmap of the command-line export records every write to the node, through either export.
            var live = new List<string> { "-f", "raw", "-c", "write 1M 4k", "-c", "write 10M 64k", d.Uri("live") };
            (await Tool.RunAsync("qemu-io", live)).Check("qemu-io live");
            replies.Add(await BitmapDaemon.MapAsync(d.Uri("live"), "qemu:dirty-bitmap:live"));
            replies.Add((await Tool.RunAsync("nbdinfo", "--list", "--content=false", d.Uri("live"))).Stdout.Contains("qemu:dirty-bitmap:live").ToString());
        }

        Assert.Equal(results[true], results[false]);
        Assert.Equal(
            "0 65536 1\n65536 5177344 0\n5242880 262144 1\n5505024 15466496 0\n20971520 65536 1\n21037056 12451840 0\n33488896 65536 1",
            results[false][4]);
        Assert.Equal(
            "0 65536 1\n65536 983040 0\n1048576 65536 1\n1114112 4128768 0\n5242880 262144 1\n5505024 4980736 0\n10485760 65536 1\n"
            + "10551296 10420224 0\n20971520 65536 1\n21037056 12451840 0\n33488896 65536 1",
            results[false][10]);
    }
}
