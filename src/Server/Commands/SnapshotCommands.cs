using System.Text.Json;
using ExportServer.Block.Core;
using ExportServer.Block.Transactions;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Commands;

/// <summary>The snapshot commands: each external/internal one is a transaction of one action, as in QEMU.</summary>
internal static class SnapshotCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        foreach (var type in new[] { "blockdev-snapshot-sync", "blockdev-snapshot", "blockdev-snapshot-internal-sync" })
        {
            d.Add(new QmpCommand(type, TransactionCommands.ActionArgs[type], async call =>
            {
                await Transaction.RunAsync([TransactionCommands.Create(ctx, type, call.Arguments)]).ConfigureAwait(false);
                return null;
            }));
        }

        d.Add(new QmpCommand("blockdev-snapshot-delete-internal-sync", [QmpArg.Str("device"), QmpArg.Str("id", true), QmpArg.Str("name", true)], async call =>
        {
            var device = call.RequireString("device");
            var node = GraphCommands.Lookup(ctx.Daemon, device, null);
            var id = call.GetString("id");
            var name = call.GetString("name");
            if (id is null && name is null)
            {
                throw QmpException.Generic("Name or id must be provided");
            }

            if (node is not IInternalSnapshots image)
            {
                throw QmpException.Generic($"Block format '{node.DriverName}' used by device '{device}' does not support internal snapshots");
            }

            if (!image.ListSnapshots().Any(s => (id is null || s.Id == id) && (name is null || s.Name == name)))
            {
                throw QmpException.Generic($"Snapshot with id '{id}' and name '{name}' does not exist on device '{device}'");
            }

            var deleted = await image.DeleteSnapshotAsync(id, name).ConfigureAwait(false);
            return JsonSerializer.SerializeToNode(QueryCommands.Snapshot(deleted), QmpJsonContext.Default.SnapshotInfo);
        }, "SnapshotInfo"));
    }
}
