using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Jobs;
using ExportServer.Block.Transactions;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>qapi/transaction.json: each action checked and built from its arguments, then run as one <see cref="Transaction"/>.</summary>
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
        ["block-dirty-bitmap-add"] = BitmapCommands.AddArgs,
        ["block-dirty-bitmap-remove"] = BitmapCommands.NameArgs,
        ["block-dirty-bitmap-clear"] = BitmapCommands.NameArgs,
        ["block-dirty-bitmap-enable"] = BitmapCommands.NameArgs,
        ["block-dirty-bitmap-disable"] = BitmapCommands.NameArgs,
        ["block-dirty-bitmap-merge"] = BitmapCommands.MergeArgs,
    };

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("transaction", [QmpArg.List("actions"), QmpArg.Obj("properties", optional: true)], async call =>
        {
            var grouped = false;
            if (call.Arguments["properties"] is JsonObject properties)
            {
                QmpArguments.Check(properties, [QmpArg.Enum("completion-mode", true, "individual", "grouped")], boxed: false, "properties.");
                grouped = properties["completion-mode"]?.GetValue<string>() == "grouped";
            }

            var actions = new List<ITransactionAction>();
            var list = (JsonArray)call.Arguments["actions"]!;
            var group = grouped ? new JobGroup() : null;
            for (var i = 0; i < list.Count; i++)
            {
                var action = Parse(ctx, list[i], $"actions[{i}]");
                if (group is not null)
                {
                    action = Grouped(action, group, list[i]!["type"]!.GetValue<string>());
                }

                actions.Add(action);
            }

            await Transaction.RunAsync(actions).ConfigureAwait(false);
            return null;
        }));
    }

    /// <summary>
    /// An action of a transaction with completion-mode grouped: backups end together as
    /// <paramref name="group"/>; the other actions that QEMU refuses in that mode fail in their prepare.
    /// </summary>
    private static ITransactionAction Grouped(ITransactionAction action, JobGroup group, string type)
    {
        switch (action)
        {
            case BackupAction backup:
                backup.Group = group;
                return backup;
            case AbortAction:
                return action;
            default:
                return new AbortAction($"Action '{type}' does not support Transaction property completion-mode = grouped");
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

    /// <summary>The action <paramref name="type"/> with its checked arguments <paramref name="data"/>.</summary>
    public static ITransactionAction Create(CommandContext ctx, string type, JsonObject data)
    {
        var call = new QmpCall(data, null);
        return type switch
        {
            "abort" => new AbortAction(),
            "blockdev-snapshot-sync" => new ExternalSnapshotAction(ctx.Transactions, new ExternalSnapshotRequest(call.GetString("device"), call.GetString("node-name"))
            {
                SnapshotFile = call.RequireString("snapshot-file"),
                SnapshotNodeName = call.GetString("snapshot-node-name"),
                Format = call.GetString("format") ?? "qcow2", // QAPI's documented default for blockdev-snapshot-sync
                ExistingFile = call.GetString("mode") == "existing",
            }),
            "blockdev-snapshot" => new ExternalSnapshotAction(ctx.Transactions, new ExternalSnapshotRequest(null, call.RequireString("node"))
            {
                Overlay = call.RequireString("overlay"),
            }),
            "blockdev-snapshot-internal-sync" => new InternalSnapshotAction(ctx.Transactions, call.RequireString("device"), call.RequireString("name")),
            "drive-backup" => BackupJobCommands.DriveBackup(ctx, call),
            "blockdev-backup" => BackupJobCommands.BlockdevBackup(ctx, call),
            _ when BitmapCommands.Actions.ContainsKey(type) => BitmapCommands.Create(ctx, type, call),
            _ => throw new InvalidOperationException(type),
        };
    }
}
