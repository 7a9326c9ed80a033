using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>qapi/transaction.json: every action prepared in order, then all committed or all aborted in reverse.</summary>
internal static class TransactionCommands
{
    /// <summary>The action types and the arguments each checks before anything is prepared.</summary>
    public static readonly Dictionary<string, QmpArg[]> ActionArgs = new(StringComparer.Ordinal)
    {
        ["abort"] = [],
        ["blockdev-snapshot-sync"] =
        [
            QmpArg.Str("device", true), QmpArg.Str("node-name", true), QmpArg.Str("snapshot-file"),
            QmpArg.Str("snapshot-node-name", true), QmpArg.Str("format", true),
            QmpArg.Enum("mode", true, "existing", "absolute-paths"),
        ],
        ["blockdev-snapshot"] = [QmpArg.Str("node"), QmpArg.Str("overlay")],
        ["blockdev-snapshot-internal-sync"] = [QmpArg.Str("device"), QmpArg.Str("name")],
        ["drive-backup"] = BackupJobCommands.DriveBackupArgs,
        ["blockdev-backup"] = BackupJobCommands.BlockdevBackupArgs,
    };

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("transaction", [QmpArg.List("actions"), QmpArg.Obj("properties", optional: true)], async call =>
        {
            if (call.Arguments["properties"] is JsonObject properties)
            {
                QmpArguments.Check(properties, [QmpArg.Enum("completion-mode", true, "individual", "grouped")], boxed: false, "properties.");
            }

            var actions = new List<ITransactionAction>();
            var list = (JsonArray)call.Arguments["actions"]!;
            for (var i = 0; i < list.Count; i++)
            {
                actions.Add(Parse(ctx, list[i], $"actions[{i}]"));
            }

            await RunAsync(actions).ConfigureAwait(false);
            return null;
        }));
    }

    /// <summary>Prepares each action; on the first failure aborts the prepared ones (newest first) and rethrows.</summary>
    public static async ValueTask RunAsync(IReadOnlyList<ITransactionAction> actions)
    {
        var prepared = new List<ITransactionAction>();
        try
        {
            foreach (var a in actions)
            {
                prepared.Add(a);
                await a.PrepareAsync().ConfigureAwait(false);
            }
        }
        catch
        {
            for (var i = prepared.Count - 1; i >= 0; i--)
            {
                await prepared[i].AbortAsync().ConfigureAwait(false);
            }

            throw;
        }

        foreach (var a in actions)
        {
            await a.CommitAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Builds an action from {"type", "data"} after checking data against the type's arguments.</summary>
    public static ITransactionAction Parse(CommandContext ctx, JsonNode? action, string path)
    {
        if (action is not JsonObject o)
        {
            throw QmpException.Generic($"Invalid parameter type for '{path}', expected: object");
        }

        if (o["type"] is not JsonValue typeValue || typeValue.GetValueKind() != JsonValueKind.String)
        {
            throw QmpException.Generic(o.ContainsKey("type")
                ? $"Invalid parameter type for '{path}.type', expected: string"
                : $"Parameter '{path}.type' is missing");
        }

        var type = typeValue.GetValue<string>();
        if (!ActionArgs.TryGetValue(type, out var args))
        {
            throw QmpException.Generic($"Parameter '{path}.type' does not accept value '{type}'");
        }

        if (o["data"] is not JsonObject data)
        {
            throw QmpException.Generic(o.ContainsKey("data")
                ? $"Invalid parameter type for '{path}.data', expected: object"
                : $"Parameter '{path}.data' is missing");
        }

        foreach (var (key, _) in o)
        {
            if (key is not ("type" or "data"))
            {
                throw QmpException.Generic($"Parameter '{path}.{key}' is unexpected");
            }
        }

        QmpArguments.Check(data, args, boxed: false, path + ".data.");
        return Create(ctx, type, data);
    }

    public static ITransactionAction Create(CommandContext ctx, string type, JsonObject data) => type switch
    {
        "abort" => new AbortAction(),
        "blockdev-snapshot-sync" => new ExternalSnapshotAction(ctx, data, sync: true),
        "blockdev-snapshot" => new ExternalSnapshotAction(ctx, data, sync: false),
        "blockdev-snapshot-internal-sync" => new InternalSnapshotAction(ctx, data),
        "drive-backup" => new JobBackupAction(ctx, data, drive: true),
        "blockdev-backup" => new JobBackupAction(ctx, data, drive: false),
        _ => throw new InvalidOperationException(type),
    };
}
