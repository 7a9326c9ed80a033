using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Stream;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// block-stream (qapi/block-core.json), and the chain edits stream and commit share: pointing a
/// node at a new backing node with the name in its header rewritten, and closing the layers that
/// fell out of the chain.
/// </summary>
internal static class StreamJobCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("block-stream", [
            QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("base", true), QmpArg.Str("base-node", true),
            QmpArg.Str("bottom", true), QmpArg.Str("backing-file", true), QmpArg.Bool("backing-mask-protocol"),
            QmpArg.Enum("on-error", true, BlockJobCommands.ErrorPolicies), QmpArg.Str("filter-node-name", true),
            .. BlockJobCommands.CommonArgs], call => StartAsync(ctx, call)));
    }

    private static async ValueTask<JsonNode?> StartAsync(CommandContext ctx, QmpCall call)
    {
        var daemon = ctx.Daemon;
        var device = call.RequireString("device");
        var top = GraphCommands.Lookup(daemon, device, device);
        var (baseName, baseNodeName, bottomName) = (call.GetString("base"), call.GetString("base-node"), call.GetString("bottom"));
        if (baseName is not null && baseNodeName is not null)
        {
            throw QmpException.Generic("'base' and 'base-node' cannot be specified at the same time");
        }

        if (baseName is not null && bottomName is not null)
        {
            throw QmpException.Generic("'base' and 'bottom' cannot be specified at the same time");
        }

        if (bottomName is not null && baseNodeName is not null)
        {
            throw QmpException.Generic("'bottom' and 'base-node' cannot be specified at the same time");
        }

        BlockNode? baseNode = null;
        if (baseName is not null)
        {
            baseNode = FindBackingImage(top, baseName) ?? throw QmpException.Generic($"Can't find '{baseName}' in the backing chain");
        }
        else if (baseNodeName is not null)
        {
            baseNode = GraphCommands.Lookup(daemon, null, baseNodeName);
            if (ReferenceEquals(baseNode, top) || !GraphCommands.Chain(top).Contains(baseNode))
            {
                throw QmpException.Generic($"Node '{baseNodeName}' is not a backing image of '{device}'");
            }
        }
        else if (bottomName is not null)
        {
            var bottom = GraphCommands.Lookup(daemon, null, bottomName);
            if (!GraphCommands.Chain(top).Contains(bottom))
            {
                throw QmpException.Generic($"Node '{bottomName}' is not in a chain starting from '{device}'");
            }

            baseNode = bottom.BackingChild?.Node;
        }

        var backingFile = call.GetString("backing-file");
        if (backingFile is not null && baseNode is null)
        {
            throw QmpException.Generic("backing file specified, but streaming the entire chain");
        }

        var writable = await OpenWritableAsync(top).ConfigureAwait(false);
        var (finish, clean) = ChainChange(daemon, top, baseNode, backingFile, writable, Between(top, baseNode));
        var settings = new LayerCopySettings(
            "stream",
            From: 2,
            Until: ChainScan.DepthOf(top, baseNode),
            GuardWrites: true,
            OnError: BlockJobCommands.Policy(call, "on-error"),
            Finish: finish,
            Clean: clean);
        try
        {
            await BlockJobCommands.StartFilteredAsync(ctx, call, top.NodeName, top, "copy-on-read", _ => new LayerCopyJob(top, top, settings)).ConfigureAwait(false);
        }
        catch
        {
            await RestoreAsync(daemon, writable, []).ConfigureAwait(false);
            throw;
        }

        return null;
    }

    /// <summary>
    /// A job's end as two steps: on success (finalisation) <paramref name="node"/> is backed by
    /// <paramref name="backing"/>; last, in every outcome, <see cref="RestoreAsync"/> runs, closing
    /// the <paramref name="dropped"/> layers only when the first step ran.
    /// </summary>
    public static (Func<ValueTask> Finish, Func<ValueTask> Clean) ChainChange(
        StorageDaemon daemon, BlockNode node, BlockNode? backing, string? backingFile, BlockNode? writable, IReadOnlyList<BlockNode> dropped)
    {
        var finished = false;
        return (
            async () =>
            {
                await SetBackingAsync(node, backing, backingFile).ConfigureAwait(false);
                finished = true;
            },
            () => RestoreAsync(daemon, writable, finished ? dropped : []));
    }

    /// <summary>
    /// QEMU's bdrv_find_backing_image: the layer below <paramref name="top"/> whose file name is
    /// <paramref name="name"/>, taken as it is or, for a path, as the same file: <paramref name="name"/>
    /// relative to the directory of the layer above it against the layer's own name relative to
    /// where it was opened, both made absolute (so "/images/mid.qcow2" finds a layer opened as "mid.qcow2").
    /// </summary>
    public static BlockNode? FindBackingImage(BlockNode top, string name)
    {
        var above = top;
        foreach (var n in GraphCommands.Chain(top).Skip(1))
        {
            if (n.FileName == name || (IsPath(name) && IsPath(n.FileName) && IsPath(above.FileName) && SameFile(above.FileName, name, n.FileName)))
            {
                return n;
            }

            above = n;
        }

        return null;
    }

    /// <summary>A plain file path: not a URI, not a json: description, and nothing a path cannot hold (NUL).</summary>
    private static bool IsPath(string name) =>
        name.Length > 0 && !name.Contains("://", StringComparison.Ordinal) && !name.StartsWith("json:", StringComparison.Ordinal) &&
        !name.Contains('\0');

    private static bool SameFile(string aboveFile, string name, string layerFile)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(aboveFile))!;
        return Path.GetFullPath(name, dir) == Path.GetFullPath(layerFile);
    }

    /// <summary>The layers strictly between <paramref name="top"/> and <paramref name="bottom"/> (exclusive; null = to the end), top first.</summary>
    public static List<BlockNode> Between(BlockNode top, BlockNode? bottom) =>
        GraphCommands.Chain(top).Skip(1).TakeWhile(n => !ReferenceEquals(n, bottom)).ToList();

    /// <summary>Reopens <paramref name="node"/> read-write for a job that writes into it; returns it when it had to, for <see cref="RestoreAsync"/>.</summary>
    public static async ValueTask<BlockNode?> OpenWritableAsync(BlockNode node)
    {
        if (!node.IsReadOnly)
        {
            return null;
        }

        await GraphCommands.SetReadOnlyAsync(node, false).ConfigureAwait(false);
        return node;
    }

    /// <summary>
    /// Makes <paramref name="backing"/> the backing node of <paramref name="node"/> and records it in
    /// the image header: <paramref name="backingFile"/> when given, else the backing node's file name
    /// (none when the chain ends here). A read-only node is reopened read-write for the rewrite.
    /// </summary>
    public static async ValueTask SetBackingAsync(BlockNode node, BlockNode? backing, string? backingFile)
    {
        await node.SetBackingAsync(backing).ConfigureAwait(false);
        if (node is not IBackingFileWriter writer)
        {
            return;
        }

        var reopened = await OpenWritableAsync(node).ConfigureAwait(false);
        try
        {
            var name = backing is null ? null : backingFile ?? backing.FileName;
            await writer.WriteBackingFileAsync(name, backing?.DriverName).ConfigureAwait(false);
        }
        finally
        {
            if (reopened is not null)
            {
                await GraphCommands.SetReadOnlyAsync(reopened, true).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The end of a job: the node it reopened read-write goes back to read-only, the layers that fell
    /// out of the chain are closed, top first, unless something else (an export, a job, another
    /// parent) still uses them or they were added with blockdev-add (those stay until blockdev-del,
    /// as in QEMU), and exports see the new state of their nodes.
    /// </summary>
    public static async ValueTask RestoreAsync(StorageDaemon daemon, BlockNode? reopened, IReadOnlyList<BlockNode> dropped)
    {
        if (reopened is not null && daemon.Graph.TryFind(reopened.NodeName) is not null)
        {
            await GraphCommands.SetReadOnlyAsync(reopened, true).ConfigureAwait(false);
        }

        foreach (var layer in dropped)
        {
            if (layer.UserCount == 0 && !daemon.IsMonitorOwned(layer) && ReferenceEquals(daemon.Graph.TryFind(layer.NodeName), layer))
            {
                await daemon.Graph.RemoveAsync(layer.NodeName).ConfigureAwait(false);
            }
        }

        daemon.SyncExports();
    }
}
