using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// Where an rbd image is and how to reach its cluster: QEMU's BlockdevOptionsRbd (pool, namespace,
/// image, snapshot, conf, user, key-secret, auth-client-required, server) plus the Ceph options an
/// <c>rbd:</c> file name may carry, which QEMU passes on as "=keyvalue-pairs".
/// </summary>
internal sealed record RbdLocation(
    string Pool,
    string? Namespace,
    string Image,
    string? Snapshot,
    string? Conf,
    string? User,
    string? KeySecret,
    IReadOnlyList<string>? AuthClientRequired,
    IReadOnlyList<(string Host, string Port)>? Servers,
    IReadOnlyList<(string Name, string Value)> ConfPairs)
{
    private static readonly Dictionary<string, string> AuthModes = new() { ["cephx"] = "cephx", ["none"] = "none" };

    /// <summary>Reads the options; the caller refuses what is left.</summary>
    public static RbdLocation Read(OptionReader options)
    {
        var pool = options.RequireString("pool");
        var ns = options.GetString("namespace");
        var image = options.RequireString("image");
        var snapshot = options.GetString("snapshot");
        var conf = options.GetString("conf");
        var user = options.GetString("user");
        var keySecret = options.GetString("key-secret");
        var auth = ReadList(options, "auth-client-required", (item, name) =>
            item is JsonValue v && v.TryGetValue<string>(out var s)
                ? AuthModes.GetValueOrDefault(s) ?? throw BlockException.Invalid($"Parameter '{name}' does not accept value '{s}'")
                : throw BlockException.Invalid($"Invalid parameter type for '{name}', expected: string"));
        var servers = ReadList(options, "server", (item, name) =>
        {
            if (item is not JsonObject o)
            {
                throw BlockException.Invalid($"Invalid parameter type for '{name}', expected: object");
            }

            var server = new OptionReader(o, name + ".");
            var address = (server.RequireString("host"), server.RequireString("port"));
            server.EnsureAllConsumed();
            return address;
        });
        var pairs = new List<(string, string)>();
        if (options.GetString("=keyvalue-pairs") is { } json)
        {
            var list = JsonNode.Parse(json) as JsonArray ?? throw BlockException.Invalid("Invalid '=keyvalue-pairs'");
            for (var i = 0; i + 1 < list.Count; i += 2)
            {
                pairs.Add((list[i]!.GetValue<string>(), list[i + 1]!.GetValue<string>()));
            }
        }

        return new RbdLocation(pool, ns, image, snapshot, conf, user, keySecret, auth, servers, pairs);
    }

    /// <summary>A QAPI list: a JSON array (keyval's numbered keys arrive as one).</summary>
    private static List<T>? ReadList<T>(OptionReader options, string key, Func<JsonNode?, string, T> item)
    {
        switch (options.Raw(key))
        {
            case null:
                return null;
            case JsonArray array:
                var list = new List<T>(array.Count);
                for (var i = 0; i < array.Count; i++)
                {
                    list.Add(item(array[i], $"{options.FullName(key)}[{i}]"));
                }

                return list;
            default:
                throw BlockException.Invalid($"Invalid parameter type for '{options.FullName(key)}', expected: array");
        }
    }

    /// <summary>The value of rados' mon_host for the server list, as QEMU joins it; null when there is none.</summary>
    public string? MonHost => Servers is { Count: > 0 }
        ? string.Join(';', Servers.Select(s => s.Host.Contains(':', StringComparison.Ordinal) ? $"[{s.Host}]:{s.Port}" : $"{s.Host}:{s.Port}"))
        : null;

    /// <summary>QEMU's json: file name for the node (no plain name: the location is several options).</summary>
    public string JsonFileName()
    {
        var o = new JsonObject { ["driver"] = "rbd", ["pool"] = Pool, ["image"] = Image };
        if (Namespace is not null)
        {
            o["namespace"] = Namespace;
        }

        if (Snapshot is not null)
        {
            o["snapshot"] = Snapshot;
        }

        if (Conf is not null)
        {
            o["conf"] = Conf;
        }

        if (User is not null)
        {
            o["user"] = User;
        }

        return "json:" + o.ToJsonString();
    }
}
