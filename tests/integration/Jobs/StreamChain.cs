using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// The live-block-operations guide's chain [A] &lt;- [B] &lt;- [C] &lt;- [D] on a running daemon,
/// built as a guest would: A is exported, each layer is made with blockdev-snapshot-sync and gets
/// its pattern written through the export (which follows the active layer) while it is active.
/// <see cref="Expected"/> is the chain's content flattened before any job ran.
/// </summary>
internal sealed class StreamChain
{
    /// <summary>What each layer holds, written while it was the active layer.</summary>
    public static readonly Dictionary<string, string[]> Patterns = new()
    {
        ["A"] = ["write -P 0xa1 0 12M"],
        ["B"] = ["write -P 0xb2 512K 1M", "write -P 0xb3 16M 2M"],
        ["C"] = ["write -P 0xc3 2098152 70000", "write -z 8M 1M"],
        ["D"] = ["write -P 0xd4 4M 64K"],
    };

    private StreamChain(TempDir dir, JobDaemon daemon)
    {
        Dir = dir;
        Daemon = daemon;
    }

    public TempDir Dir { get; }

    public JobDaemon Daemon { get; }

    public string Expected => Dir["expected.raw"];

    public string this[string layer] => Dir[layer + ".qcow2"];

    public static async Task<StreamChain> BuildAsync(TempDir dir, bool qsd = false, int bLayerMiB = 0)
    {
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["A.qcow2"], "64M");
        var d = await StartAsync(dir, qsd ? "qsd" : "es", qsd);
        await d.AddImageAsync("A", dir["A.qcow2"]);
        await d.ExportAsync("A");
        var chain = new StreamChain(dir, d);
        var previous = "A";
        foreach (var layer in new[] { "A", "B", "C", "D" })
        {
            if (layer != "A")
            {
                await d.Qmp.ExecuteAsync("blockdev-snapshot-sync", new JsonObject
                {
                    ["node-name"] = previous, ["snapshot-file"] = dir[layer + ".qcow2"], ["snapshot-node-name"] = layer, ["format"] = "qcow2",
                });
                previous = layer;
            }

            string[] extra = layer == "B" && bLayerMiB > 0 ? [$"write -P 0xb4 24M {bLayerMiB}M"] : [];
            await QemuIoAsync(d.NbdUri("A"), "nbd", [.. Patterns[layer], .. extra]);
        }

        await QemuImgAsync("convert", "-U", "-f", "qcow2", "-O", "raw", dir["D.qcow2"], chain.Expected);
        return chain;
    }

    /// <summary>The chain as qemu-img sees it from <paramref name="top"/>: layer names, top first; each layer checks clean.</summary>
    public async Task<string[]> ChainAsync(string top = "D")
    {
        var r = (await Tool.RunAsync("qemu-img", "info", "-U", "--backing-chain", "--output=json", this[top])).Check("qemu-img info");
        var layers = JsonDocument.Parse(r.Stdout).RootElement.EnumerateArray()
            .Select(e => Path.GetFileNameWithoutExtension(e.GetProperty("filename").GetString()!)).ToArray();
        foreach (var layer in layers)
        {
            (await Tool.RunAsync("qemu-img", "check", "-U", this[layer])).Check("qemu-img check " + layer);
        }

        return layers;
    }

    /// <summary>The chain from <paramref name="top"/> still reads exactly as it did before the job.</summary>
    public Task AssertUnchangedAsync(string top = "D") => AssertSameAsync(Expected, this[top], "raw", "qcow2");

    /// <summary>The backing file name recorded in <paramref name="layer"/>'s header (null: none).</summary>
    public async Task<string?> BackingNameAsync(string layer)
    {
        var r = (await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", this[layer])).Check("qemu-img info");
        return JsonDocument.Parse(r.Stdout).RootElement.TryGetProperty("backing-filename", out var b) ? b.GetString() : null;
    }

    /// <summary>The node names the daemon holds.</summary>
    public async Task<string[]> NodesAsync()
    {
        var nodes = (JsonArray)await Daemon.Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        return nodes.Select(n => n!["node-name"]!.GetValue<string>()).Where(n => !n.StartsWith('#')).Order().ToArray();
    }

    /// <summary>Runs a job command and waits for its BLOCK_JOB_COMPLETED, which must carry no error.</summary>
    public async Task<JsonObject> RunToCompletionAsync(string command, JsonObject arguments)
    {
        var id = arguments["job-id"]!.GetValue<string>();
        await Daemon.Qmp.ExecuteAsync(command, arguments);
        var done = await Daemon.WaitJobEventAsync("BLOCK_JOB_COMPLETED", id);
        Assert.Null(done["error"]);
        await Daemon.WaitStatusAsync(id, "null");
        return done;
    }
}
