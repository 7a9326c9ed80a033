using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// A daemon (ours, or qemu-storage-daemon as the oracle) serving one qcow2 image: node 'fmt' over
/// node 'proto', a QMP monitor, an NBD server on a unix socket and a writable export 'disk'.
/// </summary>
internal sealed class BitmapDaemon : IAsyncDisposable
{
    private BitmapDaemon(TempDir dir, string tag, Daemon daemon, QmpClient qmp)
    {
        Dir = dir;
        Tag = tag;
        Process = daemon;
        Qmp = qmp;
    }

    public TempDir Dir { get; }

    public string Tag { get; }

    public Daemon Process { get; }

    public QmpClient Qmp { get; }

    public string Socket => Dir[$"{Tag}-nbd.sock"];

    public string Uri(string export = "disk") => $"nbd+unix:///{export}?socket={Socket}";

    /// <summary>Starts on <paramref name="image"/>; <paramref name="extra"/> are more options (exports).</summary>
    public static async Task<BitmapDaemon> StartAsync(TempDir dir, bool qsd, string image, string fmtOptions = "", params string[] extra)
    {
        var tag = qsd ? "qsd" : "es";
        var monitor = dir[$"{tag}-qmp.sock"];
        string[] args =
        [
            "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
            "--blockdev", $"driver=file,node-name=proto,filename={image}",
            "--blockdev", $"driver=qcow2,node-name=fmt,file=proto{fmtOptions}",
            "--nbd-server", $"addr.type=unix,addr.path={dir[$"{tag}-nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=fmt,name=disk,writable=on",
            .. extra,
        ];
        var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args);
        return new BitmapDaemon(dir, tag, d, await QmpClient.ConnectAsync(monitor));
    }

    /// <summary>qemu-io commands through the writable export.</summary>
    public async Task WriteAsync(params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands)
        {
            args.AddRange(["-c", c]);
        }

        args.Add(Uri());
        var r = await Tool.RunAsync("qemu-io", args);
        if (r.ExitCode != 0 || r.Stdout.Contains("failed", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"qemu-io {string.Join(' ', commands)}: {r.Stdout}{r.Stderr}");
        }
    }

    /// <summary>The node's dirty-bitmaps as query-named-block-nodes shows them (null when it has none).</summary>
    public async Task<JsonNode?> BitmapsAsync(string node = "fmt")
    {
        var nodes = (JsonArray)await Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        return nodes.First(n => n!["node-name"]!.GetValue<string>() == node)!["dirty-bitmaps"]?.DeepClone();
    }

    /// <summary>The bitmaps the node's image holds, as query-named-block-nodes shows them in format-specific (null without).</summary>
    public async Task<JsonNode?> StoredBitmapsAsync(string node = "fmt")
    {
        var nodes = (JsonArray)await Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        var image = nodes.First(n => n!["node-name"]!.GetValue<string>() == node)!["image"]!;
        return image["format-specific"]?["data"]?["bitmaps"]?.DeepClone();
    }

    /// <summary>The reply of a command as text (return or error), for comparing the two daemons.</summary>
    public async Task<string> ReplyAsync(string command, JsonObject? arguments = null)
    {
        var reply = await Qmp.SendAsync(command, arguments);
        reply.Remove("id");
        if (reply["error"] is JsonObject e)
        {
            return new JsonObject { ["error"] = new JsonObject { ["class"] = e["class"]!.DeepClone(), ["desc"] = e["desc"]!.DeepClone() } }.ToJsonString();
        }

        return reply.ToJsonString();
    }

    /// <summary>nbdinfo --map of a context, as "offset length type" lines.</summary>
    public static async Task<string> MapAsync(string uri, string context)
    {
        var r = await Tool.RunAsync("nbdinfo", $"--map={context}", uri);
        r.Check($"nbdinfo --map={context}");
        return string.Join('\n', r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(3))));
    }

    public async Task<int> StopAsync()
    {
        await Qmp.DisposeAsync();
        return await Process.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await Qmp.DisposeAsync();
        await Process.DisposeAsync();
    }
}
