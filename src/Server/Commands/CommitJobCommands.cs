using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Commit;
using ExportServer.Block.Jobs.Mirror;
using ExportServer.Block.Jobs.Stream;
using ExportServer.Server.Qmp;
using static ExportServer.Server.Commands.StreamJobCommands;

namespace ExportServer.Server.Commands;

/// <summary>
/// block-commit (qapi/block-core.json). Below the active layer it copies top..base into the base
/// and drops the committed layers when done; from the active layer it is a mirror into the base
/// that waits for block-job-complete to pivot the active layer's users onto the base.
/// The checks and their wording follow QEMU's qmp_block_commit.
/// </summary>
internal static class CommitJobCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("block-commit", [
            QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("base-node", true), QmpArg.Str("base", true),
            QmpArg.Str("top-node", true), QmpArg.Str("top", true), QmpArg.Str("backing-file", true),
            QmpArg.Enum("on-error", true, BlockJobCommands.ErrorPolicies), QmpArg.Str("filter-node-name", true),
            .. BlockJobCommands.CommonArgs], call => StartAsync(ctx, call)));
    }

    private static async ValueTask<JsonNode?> StartAsync(CommandContext ctx, QmpCall call)
    {
        var daemon = ctx.Daemon;
        var device = call.RequireString("device");
        var active = daemon.Graph.TryFind(device) ?? throw QmpException.DeviceNotFound($"Device '{device}' not found");
        if (daemon.Graph.Nodes.Any(n => n.Children.Any(c => ReferenceEquals(c.Node, active))))
        {
            throw QmpException.Generic("Need a root block node");
        }

        var top = FindTop(daemon, call, active);
        var baseNode = FindBase(daemon, call, top);
        if (ReferenceEquals(top, baseNode))
        {
            throw QmpException.Generic("cannot commit an image into itself");
        }

        var policy = BlockJobCommands.Policy(call, "on-error");
        var backingFile = call.GetString("backing-file");
        var writable = await OpenWritableAsync(baseNode).ConfigureAwait(false);
        try
        {
            if (ReferenceEquals(top, active))
            {
                if (backingFile is not null)
                {
                    throw QmpException.Generic("'backing-file' specified, but 'top' is the active layer");
                }

                await BlockJobCommands.StartFilteredAsync(
                    ctx, call, active.NodeName, active, "mirror_top", filter => ActiveCommit(ctx, active, baseNode, writable, policy, filter)).ConfigureAwait(false);
            }
            else
            {
                // As QEMU's commit_top, the filter also takes over the overlay's backing link (overlay -> commit_top
                // -> top): query-named-block-nodes shows it in the chain, and the chain walks skip it.
                var overlay = GraphCommands.Chain(active).First(n => ReferenceEquals(n.BackingLayer, top));
                await BlockJobCommands.StartFilteredAsync(
                    ctx, call, active.NodeName, top, "commit_top", _ => IntermediateCommit(ctx, overlay, top, baseNode, writable, policy, backingFile),
                    overlay).ConfigureAwait(false);
            }
        }
        catch
        {
            await RestoreAsync(daemon, writable, []).ConfigureAwait(false);
            throw;
        }

        return null;
    }

    private static BlockNode FindTop(Daemon.StorageDaemon daemon, QmpCall call, BlockNode active)
    {
        var (topName, topNodeName) = (call.GetString("top"), call.GetString("top-node"));
        if (topName is not null && topNodeName is not null)
        {
            throw QmpException.Generic("'top-node' and 'top' are mutually exclusive");
        }

        if (topNodeName is not null)
        {
            var top = GraphCommands.Lookup(daemon, null, topNodeName);
            return GraphCommands.Chain(active).Contains(top) ? top : throw QmpException.Generic($"'{topNodeName}' is not in this backing file chain");
        }

        if (topName is not null)
        {
            return FindBackingImage(active, topName) ?? throw QmpException.Generic($"Top image file {topName} not found");
        }

        return active;
    }

    /// <summary>The base named by base-node or base, else the bottom of <paramref name="top"/>'s chain.</summary>
    private static BlockNode FindBase(Daemon.StorageDaemon daemon, QmpCall call, BlockNode top)
    {
        var (baseName, baseNodeName) = (call.GetString("base"), call.GetString("base-node"));
        if (baseName is not null && baseNodeName is not null)
        {
            throw QmpException.Generic("'base-node' and 'base' are mutually exclusive");
        }

        if (baseNodeName is not null)
        {
            var b = GraphCommands.Lookup(daemon, null, baseNodeName);
            return GraphCommands.Chain(top).Contains(b) ? b : throw QmpException.Generic($"'{baseNodeName}' is not in this backing file chain");
        }

        if (baseName is not null)
        {
            return FindBackingImage(top, baseName) ?? throw QmpException.Generic($"Can't find '{baseName}' in the backing chain");
        }

        return GraphCommands.Chain(top).Last();
    }

    /// <summary>Copies top..base into the base; on success the node above top is backed by the base and top..base are dropped.</summary>
    private static LayerCopyJob IntermediateCommit(
        CommandContext ctx, BlockNode overlay, BlockNode top, BlockNode baseNode, BlockNode? writable, ErrorPolicy policy, string? backingFile)
    {
        var (finish, clean) = ChainChange(ctx.Daemon, overlay, baseNode, backingFile, writable, [top, .. Between(top, baseNode)]);
        var settings = new LayerCopySettings(
            "commit",
            From: 1,
            Until: ChainScan.DepthOf(top, baseNode),
            OnError: policy,
            Finish: finish,
            Clean: clean);
        return new LayerCopyJob(top, baseNode, settings);
    }

    /// <summary>Mirrors the active layer into the base; the pivot moves the exports (on the job's filter) onto the base, which stays writable.</summary>
    private static ActiveCommitJob ActiveCommit(CommandContext ctx, BlockNode active, BlockNode baseNode, BlockNode? writable, ErrorPolicy policy, JobFilter filter)
    {
        List<BlockNode> dropped = [active, .. Between(active, baseNode)];
        var pivoted = false;
        var settings = new MirrorSettings(
            SyncMode.Top,
            OnSourceError: policy,
            OnTargetError: policy,
            Pivot: async () =>
            {
                await ctx.Daemon.ReplaceExportedNodeAsync(filter.Node, baseNode).ConfigureAwait(false);
                await ctx.Daemon.ReplaceExportedNodeAsync(active, baseNode).ConfigureAwait(false);
                pivoted = true;
            },
            Type: "commit",
            BaseDepth: ChainScan.DepthOf(active, baseNode));
        return new ActiveCommitJob(
            new MirrorJob(active, baseNode, settings),
            () => pivoted ? RestoreAsync(ctx.Daemon, null, dropped) : RestoreAsync(ctx.Daemon, writable, []));
    }
}
