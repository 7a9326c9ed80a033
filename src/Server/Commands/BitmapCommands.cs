using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Bitmaps;
using ExportServer.Block.Transactions;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// qapi/block-core.json's dirty bitmap commands. Each but the checksum is a transaction of one
/// action, as the same action runs inside <c>transaction</c>.
/// </summary>
internal static class BitmapCommands
{
    public static readonly QmpArg[] AddArgs =
    [
        QmpArg.Str("node"), QmpArg.Str("name"), QmpArg.Int("granularity", true), QmpArg.Bool("persistent"), QmpArg.Bool("disabled"),
    ];

    public static readonly QmpArg[] NameArgs = [QmpArg.Str("node"), QmpArg.Str("name")];

    public static readonly QmpArg[] MergeArgs = [QmpArg.Str("node"), QmpArg.Str("target"), QmpArg.List("bitmaps")];

    /// <summary>x-block-dirty-bitmap-rotate: the nodes, the recording bitmap on each, the new one's name, older ones to fold in.</summary>
    public static readonly QmpArg[] RotateArgs = [QmpArg.List("nodes"), QmpArg.Str("current"), QmpArg.Str("new"), QmpArg.List("merge", true)];

    /// <summary>The bitmap actions, by their command and transaction action names.</summary>
    public static readonly Dictionary<string, QmpArg[]> Actions = new(StringComparer.Ordinal)
    {
        ["block-dirty-bitmap-add"] = AddArgs,
        ["block-dirty-bitmap-remove"] = NameArgs,
        ["block-dirty-bitmap-clear"] = NameArgs,
        ["block-dirty-bitmap-enable"] = NameArgs,
        ["block-dirty-bitmap-disable"] = NameArgs,
        ["block-dirty-bitmap-merge"] = MergeArgs,
    };

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        foreach (var (type, args) in Actions)
        {
            d.Add(new QmpCommand(type, args, async call =>
            {
                await Transaction.RunAsync([Create(ctx, type, call)]).ConfigureAwait(false);
                return null;
            }));
        }

        d.Add(new QmpCommand("x-block-dirty-bitmap-rotate", RotateArgs, async call =>
        {
            var merge = call.Arguments["merge"] is JsonArray m ? Names(m, "merge") : [];
            var actions = BitmapRotation.Actions(
                ctx.Daemon.Graph, Names((JsonArray)call.Arguments["nodes"]!, "nodes"), call.RequireString("current"), call.RequireString("new"), merge);
            await Transaction.RunAsync(actions).ConfigureAwait(false);
            return null;
        }));

        d.Add(new QmpCommand("x-debug-block-dirty-bitmap-sha256", NameArgs, call =>
        {
            var (_, bitmap) = BitmapLookup.Find(ctx.Daemon.Graph, call.RequireString("node"), call.RequireString("name"));
            return ValueTask.FromResult<JsonNode?>(new JsonObject { ["sha256"] = bitmap.Bits.Sha256() });
        }, "BlockDirtyBitmapSha256"));
    }

    /// <summary>The action <paramref name="type"/> from its checked arguments.</summary>
    public static ITransactionAction Create(CommandContext ctx, string type, QmpCall call)
    {
        var graph = ctx.Daemon.Graph;
        var node = call.RequireString("node");
        return type switch
        {
            "block-dirty-bitmap-add" => new BitmapAddAction(graph, node, call.RequireString("name"), Granularity(call),
                call.GetBool("persistent", false), call.GetBool("disabled", false)),
            "block-dirty-bitmap-remove" => new BitmapRemoveAction(graph, node, call.RequireString("name")),
            "block-dirty-bitmap-clear" => new BitmapChangeAction(graph, node, call.RequireString("name"), BitmapChange.Clear),
            "block-dirty-bitmap-enable" => new BitmapChangeAction(graph, node, call.RequireString("name"), BitmapChange.Enable),
            "block-dirty-bitmap-disable" => new BitmapChangeAction(graph, node, call.RequireString("name"), BitmapChange.Disable),
            "block-dirty-bitmap-merge" => new BitmapMergeAction(graph, node, call.RequireString("target"), Sources((JsonArray)call.Arguments["bitmaps"]!)),
            _ => throw new InvalidOperationException(type),
        };
    }

    /// <summary>'granularity' is a uint32 in the schema: what does not fit is refused as QEMU's input visitor does.</summary>
    private static long? Granularity(QmpCall call)
    {
        var g = call.GetInt("granularity");
        if (g is < 0 or > uint.MaxValue)
        {
            throw QmpException.Generic("Parameter 'granularity' expects uint32_t");
        }

        return g;
    }

    /// <summary>BlockDirtyBitmapOrStr: a name, or {"node", "name"}.</summary>
    private static List<BitmapSource> Sources(JsonArray list)
    {
        var sources = new List<BitmapSource>();
        for (var i = 0; i < list.Count; i++)
        {
            sources.Add(list[i] switch
            {
                JsonValue v when v.GetValueKind() == JsonValueKind.String => new BitmapSource(null, v.GetValue<string>()),
                JsonObject o => Source(o, $"bitmaps[{i}]"),
                _ => throw QmpException.Generic($"Invalid parameter type for 'bitmaps[{i}]', expected: BlockDirtyBitmapOrStr"),
            });
        }

        return sources;
    }

    /// <summary>A list of strings, each checked as QEMU's input visitor checks a ['str'] member.</summary>
    private static List<string> Names(JsonArray list, string name)
    {
        var names = new List<string>();
        for (var i = 0; i < list.Count; i++)
        {
            names.Add(list[i] is JsonValue v && v.GetValueKind() == JsonValueKind.String
                ? v.GetValue<string>()
                : throw QmpException.Generic($"Invalid parameter type for '{name}[{i}]', expected: string"));
        }

        return names;
    }

    private static BitmapSource Source(JsonObject o, string path)
    {
        QmpArguments.Check(o, NameArgs, boxed: false, path + ".");
        return new BitmapSource(o["node"]!.GetValue<string>(), o["name"]!.GetValue<string>());
    }
}
