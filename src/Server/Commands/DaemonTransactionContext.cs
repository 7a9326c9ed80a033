using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Transactions;

namespace ExportServer.Server.Commands;

/// <summary>
/// The daemon behind transaction actions: its graph and jobs, QEMU's node lookup, and its exports as
/// the users of nodes.
/// </summary>
internal sealed class DaemonTransactionContext(CommandContext ctx) : ITransactionContext
{
    public BlockGraph Graph => ctx.Daemon.Graph;

    public JobRegistry Jobs => ctx.Jobs;

    public BlockNode Lookup(string? device, string? nodeName) => GraphCommands.Lookup(ctx.Daemon, device, nodeName);

    public ValueTask ReplaceUsersAsync(BlockNode old, BlockNode replacement) => ctx.Daemon.ReplaceExportedNodeAsync(old, replacement);

    public void SyncUsers() => ctx.Daemon.SyncExports();

    public ValueTask SetReadOnlyAsync(BlockNode node, bool readOnly) => GraphCommands.SetReadOnlyAsync(node, readOnly);
}
