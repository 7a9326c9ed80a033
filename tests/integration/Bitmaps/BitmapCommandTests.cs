using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// The dirty bitmap commands, run step by step against our daemon and qemu-storage-daemon with the
/// same writes in between: every reply (query-named-block-nodes' dirty-bitmaps, checksums, errors)
/// must be the same.
/// </summary>
public sealed class BitmapCommandTests
{
    private static JsonObject Args(string json) => (JsonObject)JsonNode.Parse(json)!;

    /// <summary>
    /// Steps: a QMP command with arguments, "write" for a qemu-io command through the export, or
    /// "query" for the format node's bitmaps (the protocol node's are not compared: which bytes the
    /// qcow2 driver writes to its file for a guest write differs between the two).
    /// </summary>
    private static readonly (string Command, string Args)[] Steps =
    [
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"b0"}"""),
        ("query", ""),
        ("write", "write 0 4k"),
        ("write", "write 1M 130k"),
        ("write", "write -z 8M 64k"),
        ("query", ""),
        ("x-debug-block-dirty-bitmap-sha256", """{"node":"fmt","name":"b0"}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"b1","granularity":4096,"disabled":true}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"p","persistent":true}"""),
        ("block-dirty-bitmap-add", """{"node":"proto","name":"raw","granularity":512}"""),
        ("block-dirty-bitmap-add", """{"node":"proto","name":"rawp","persistent":true}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"b0"}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":""}"""),
        ("block-dirty-bitmap-add", """{"node":"nope","name":"x"}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"g","granularity":1000}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"g","granularity":256}"""),
        ("block-dirty-bitmap-add", """{"node":"fmt","name":"big","granularity":4294967296,"persistent":true}"""),
        ("write", "write 2M 4k"),
        ("query", ""),
        ("block-dirty-bitmap-enable", """{"node":"fmt","name":"b1"}"""),
        ("block-dirty-bitmap-disable", """{"node":"fmt","name":"b0"}"""),
        ("write", "write 3M 512"),
        ("query", ""),
        ("block-dirty-bitmap-merge", """{"node":"fmt","target":"b1","bitmaps":["b0",{"node":"fmt","name":"p"}]}"""),
        ("x-debug-block-dirty-bitmap-sha256", """{"node":"fmt","name":"b1"}"""),
        ("block-dirty-bitmap-merge", """{"node":"fmt","target":"b1","bitmaps":["nope"]}"""),
        ("block-dirty-bitmap-merge", """{"node":"fmt","target":"b1","bitmaps":[{"node":"fmt","name":"zz"}]}"""),
        ("block-dirty-bitmap-merge", """{"node":"fmt","target":"zz","bitmaps":["b0"]}"""),
        ("query", ""),
        ("block-dirty-bitmap-clear", """{"node":"fmt","name":"b0"}"""),
        ("block-dirty-bitmap-clear", """{"node":"nope","name":"b0"}"""),
        ("block-dirty-bitmap-remove", """{"node":"fmt","name":"b1"}"""),
        ("block-dirty-bitmap-remove", """{"node":"fmt","name":"b1"}"""),
        ("x-debug-block-dirty-bitmap-sha256", """{"node":"fmt","name":"b1"}"""),
        ("query", ""),
        ("transaction", """{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"fmt","name":"t1"}},{"type":"block-dirty-bitmap-clear","data":{"node":"fmt","name":"p"}},{"type":"block-dirty-bitmap-merge","data":{"node":"fmt","target":"b0","bitmaps":["p"]}}]}"""),
        ("query", ""),
        ("transaction", """{"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"fmt","name":"t2"}},{"type":"block-dirty-bitmap-disable","data":{"node":"fmt","name":"t1"}},{"type":"block-dirty-bitmap-clear","data":{"node":"fmt","name":"nope"}}]}"""),
        ("query", ""),
        ("transaction", """{"actions":[{"type":"block-dirty-bitmap-remove","data":{"node":"fmt","name":"t1"}},{"type":"abort","data":{}}]}"""),
        ("query", ""),
    ];

    [Fact]
    public async Task CommandsAnswerAsQemuStorageDaemonDoes()
    {
        using var dir = new TempDir();
        var ours = new List<string>();
        var theirs = new List<string>();
        foreach (var (qsd, replies) in new[] { (true, theirs), (false, ours) })
        {
            var image = dir[qsd ? "qsd.qcow2" : "es.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
            await using var d = await BitmapDaemon.StartAsync(dir, qsd, image);
            foreach (var (command, args) in Steps)
            {
                switch (command)
                {
                    case "write":
                        await d.WriteAsync(args);
                        break;
                    case "query":
                        replies.Add((await d.BitmapsAsync())?.ToJsonString() ?? "none");
                        break;
                    default:
                        replies.Add($"{command} {args}: " + await d.ReplyAsync(command, Args(args)));
                        break;
                }
            }
        }

        Assert.Equal(theirs.Count, ours.Count);
        for (var i = 0; i < theirs.Count; i++)
        {
            Assert.Equal(theirs[i], ours[i]);
        }
    }

    [Fact]
    public async Task TheCommandsAreInTheSchema()
    {
        using var dir = new TempDir();
        var image = dir["a.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
        await using var d = await BitmapDaemon.StartAsync(dir, false, image);
        var schema = (JsonArray)await d.Qmp.ExecuteAsync("query-qmp-schema");
        var commands = schema.Where(e => e!["meta-type"]!.GetValue<string>() == "command").Select(e => e!["name"]!.GetValue<string>()).ToHashSet();
        foreach (var c in new[]
                 {
                     "block-dirty-bitmap-add", "block-dirty-bitmap-remove", "block-dirty-bitmap-clear", "block-dirty-bitmap-enable",
                     "block-dirty-bitmap-disable", "block-dirty-bitmap-merge", "x-debug-block-dirty-bitmap-sha256",
                 })
        {
            Assert.Contains(c, commands);
        }
    }
}
