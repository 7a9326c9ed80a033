using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// The targets of drive-mirror and drive-backup: a file name, created (mode absolute-paths) by the
/// format's creator or opened as it is (mode existing), then opened as a node of the graph. A file
/// name of a protocol that makes no files (an NBD URI) always names an existing export.
/// </summary>
internal static class JobTargets
{
    /// <summary>Creates (unless <paramref name="existing"/>) and opens <paramref name="filename"/> as a <paramref name="format"/> node.</summary>
    public static async ValueTask<BlockNode> OpenAsync(
        CommandContext ctx, string filename, string format, string? nodeName, bool existing, long size, BlockNode? backing)
    {
        var graph = ctx.Daemon.Graph;
        if (nodeName is not null && graph.TryFind(nodeName) is not null)
        {
            throw QmpException.Generic($"Duplicate nodes with node-name='{nodeName}'");
        }

        if (!graph.HasDriver(format))
        {
            throw QmpException.Generic($"Unknown driver '{format}'");
        }

        var protocol = graph.ProtocolOptions(filename);
        var protocolDriver = protocol["driver"]!.GetValue<string>();
        if (!existing && graph.TryGetDriver(protocolDriver) is IImageCreator)
        {
            await CreateAsync(graph, filename, format, size, backing).ConfigureAwait(false);
        }

        var options = format == protocolDriver
            ? protocol
            : new JsonObject { ["driver"] = format, ["file"] = protocol };
        if (nodeName is not null)
        {
            options["node-name"] = nodeName;
        }

        return await graph.AddAsync(options).ConfigureAwait(false);
    }

    /// <summary>
    /// QEMU's bdrv_img_create for a job target: the source's size, and for sync=top the source's
    /// backing as the target's backing file where the format has one (a raw target simply has none).
    /// </summary>
    private static async ValueTask CreateAsync(BlockGraph graph, string filename, string format, long size, BlockNode? backing)
    {
        var creator = ImageCreation.FileCreator(graph, format)
                      ?? throw QmpException.Generic($"Driver '{format}' does not support image creation");
        var options = new JsonObject { [CreateOption.Size] = size };
        if (backing is not null && ImageCreation.Accepts(creator, CreateOption.BackingFile))
        {
            options[CreateOption.BackingFile] = backing.FileName;
            options[CreateOption.BackingFormat] = backing.DriverName;
        }

        await ImageCreation.CreateFileAsync(graph, format, filename, options).ConfigureAwait(false);
    }
}
