using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>qapi/block-core.json graph commands: add, delete, reopen, resize, backing file, write threshold; objects.</summary>
internal static class GraphCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        var daemon = ctx.Daemon;
        d.Add(new QmpCommand("blockdev-add", [QmpArg.Str("driver"), QmpArg.Str("node-name", optional: true)], async call =>
        {
            await daemon.BlockdevAddAsync(call.Arguments).ConfigureAwait(false);
            return null;
        }, Boxed: true));
        d.Add(new QmpCommand("blockdev-del", [QmpArg.Str("node-name")], async call =>
        {
            var node = daemon.Graph.TryFind(call.RequireString("node-name"));
            await daemon.BlockdevDelAsync(call.RequireString("node-name")).ConfigureAwait(false);
            if (node is not null)
            {
                ctx.Thresholds.Set(node, 0);
            }

            return null;
        }) { Aliases = ["x-blockdev-del"] });
        d.Add(new QmpCommand("blockdev-reopen", [QmpArg.List("options")], call => ReopenAsync(daemon, (JsonArray)call.Arguments["options"]!)));
        d.Add(new QmpCommand("block_resize", [QmpArg.Str("device", optional: true), QmpArg.Str("node-name", optional: true), QmpArg.Int("size")], async call =>
        {
            var node = Lookup(daemon, call.GetString("device"), call.GetString("node-name"));
            var size = call.GetInt("size")!.Value;
            if (size < 0)
            {
                throw QmpException.Generic("Parameter 'size' expects a >0 size");
            }

            // As QEMU's, a resize is a user that needs to resize: refused while another does not share it.
            using (node.TakeUser("block_resize", BlockPermissions.Resize))
            {
                await node.TruncateAsync(size).ConfigureAwait(false);
            }

            daemon.SyncExports();
            return null;
        }));
        d.Add(new QmpCommand("change-backing-file", [QmpArg.Str("device"), QmpArg.Str("image-node-name"), QmpArg.Str("backing-file")], async call =>
        {
            var top = Lookup(daemon, call.RequireString("device"), null);
            var imageName = call.RequireString("image-node-name");
            var image = daemon.Graph.TryFind(imageName) ?? throw QmpException.Generic($"Cannot find node-name='{imageName}'");
            if (!Chain(top).Contains(image))
            {
                throw QmpException.Generic($"Node '{imageName}' is not in the chain of '{top.NodeName}'");
            }

            if (image is not IBackingFileWriter writer)
            {
                throw QmpException.Generic($"Could not change the backing file to '{call.RequireString("backing-file")}': driver '{image.DriverName}' has no backing file");
            }

            var backingFormat = image.BackingChild?.Node.DriverName;
            await writer.WriteBackingFileAsync(call.RequireString("backing-file"), backingFormat).ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("block-set-write-threshold", [QmpArg.Str("node-name"), QmpArg.Int("write-threshold")], call =>
        {
            var name = call.RequireString("node-name");
            var node = daemon.Graph.TryFind(name) ?? throw QmpException.Generic($"Device '{name}' not found");
            ctx.Thresholds.Set(node, call.GetInt("write-threshold")!.Value);
            return Empty();
        }));
        d.Add(new QmpCommand("object-add", [QmpArg.Str("qom-type"), QmpArg.Str("id")], call =>
        {
            daemon.Objects.Add(call.Arguments);
            return Empty();
        }, Boxed: true));
        d.Add(new QmpCommand("object-del", [QmpArg.Str("id")], call =>
        {
            daemon.Objects.Delete(call.RequireString("id"));
            return Empty();
        }));
    }

    /// <summary>QEMU's bdrv_lookup_bs; a device name is also taken as a node name (we have no named devices).</summary>
    public static BlockNode Lookup(StorageDaemon daemon, string? device, string? nodeName)
    {
        var node = (device is null ? null : daemon.Graph.TryFind(device)) ?? (nodeName is null ? null : daemon.Graph.TryFind(nodeName));
        return node ?? throw QmpException.Generic($"Cannot find device='{device ?? string.Empty}' nor node-name='{nodeName ?? string.Empty}'");
    }

    /// <summary>The node and its backing chain, top first, through format nodes' backing children.</summary>
    public static IEnumerable<BlockNode> Chain(BlockNode top)
    {
        for (var n = top; n is not null; n = n.BackingLayer)
        {
            yield return n;
        }
    }

    /// <summary>
    /// blockdev-reopen: every listed node keeps its driver; read-only and backing are what may change.
    /// All entries are checked before any node changes. Going read-write reopens the file child first.
    /// </summary>
    private static async ValueTask<JsonNode?> ReopenAsync(StorageDaemon daemon, JsonArray options)
    {
        var plans = new List<(BlockNode Node, bool ReadOnly, bool ChangeBacking, BlockNode? Backing)>();
        for (var i = 0; i < options.Count; i++)
        {
            if (options[i] is not JsonObject o)
            {
                throw QmpException.Generic($"Invalid parameter type for 'options[{i}]', expected: object");
            }

            var r = new Block.Core.Options.OptionReader(o, $"options[{i}].");
            var driver = r.RequireString("driver");
            var name = r.GetString("node-name") ?? throw QmpException.Generic("node-name not specified");
            var node = daemon.Graph.TryFind(name) ?? throw QmpException.Generic($"Cannot find node named '{name}'");
            if (driver != node.DriverName)
            {
                throw QmpException.Generic($"Cannot change the option 'driver'");
            }

            var readOnly = r.GetBool("read-only", false);
            var changeBacking = o.ContainsKey("backing");
            BlockNode? backing = null;
            if (changeBacking)
            {
                r.Consume("backing");
                backing = o["backing"] switch
                {
                    null => null,
                    JsonValue v when v.GetValueKind() == JsonValueKind.String => daemon.Graph.TryFind(v.GetValue<string>())
                        ?? throw QmpException.Generic($"Cannot find device='' nor node-name='{v.GetValue<string>()}'"),
                    _ => throw QmpException.Generic($"Invalid parameter type for 'options[{i}].backing', expected: string"),
                };
                if (!node.SupportsBacking && backing is not null)
                {
                    throw QmpException.Generic($"Driver '{node.DriverName}' of node '{name}' does not support backing files");
                }
            }

            plans.Add((node, readOnly, changeBacking && (backing != node.BackingChild?.Node), backing));
        }

        // QEMU's permission check: a node a writer still writes through cannot become read-only.
        var changing = plans.Where(p => p.ReadOnly).Select(p => p.Node).ToList();
        foreach (var (node, readOnly, _, _) in plans)
        {
            if (readOnly && !node.IsReadOnly && node.HasWriteUser(changing))
            {
                throw QmpException.Generic($"Read-only block node '{node.NodeName}' cannot support read-write users");
            }
        }

        foreach (var (node, readOnly, changeBacking, backing) in plans)
        {
            if (changeBacking)
            {
                await node.SetBackingAsync(backing).ConfigureAwait(false);
            }

            await SetReadOnlyAsync(node, readOnly).ConfigureAwait(false);
        }

        daemon.SyncExports();
        return null;
    }

    /// <summary>Changes a node's mode and that of the file children only it uses (writable from the bottom up).</summary>
    public static async ValueTask SetReadOnlyAsync(BlockNode node, bool readOnly)
    {
        var files = new List<BlockNode>();
        for (var f = node.FileChild?.Node; f is not null && f.UserCount == 1; f = f.FileChild?.Node)
        {
            files.Add(f);
        }

        if (!readOnly)
        {
            for (var i = files.Count - 1; i >= 0; i--)
            {
                await files[i].SetReadOnlyAsync(false).ConfigureAwait(false);
            }
        }

        await node.SetReadOnlyAsync(readOnly).ConfigureAwait(false);
        if (readOnly)
        {
            foreach (var f in files)
            {
                await f.SetReadOnlyAsync(true).ConfigureAwait(false);
            }
        }
    }
}
