using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;

namespace ExportServer.Nbd.Server;

/// <summary>
/// type=nbd (QAPI's BlockExportOptionsNbd): a node served by the running NBD server under a name,
/// the node name unless 'name' is given.
/// </summary>
public sealed class NbdExportType : IBlockExportType
{
    public const string TypeName = "nbd";

    private readonly Func<NbdServer?> _server;

    /// <param name="server">The NBD server running now (nbd-server-start), if any.</param>
    public NbdExportType(Func<NbdServer?> server)
    {
        _server = server;
    }

    public string Name => TypeName;

    public Func<BlockExportSettings, ValueTask<BlockExport>> ReadOptions(OptionReader options)
    {
        var name = options.GetString("name");
        var description = options.GetString("description");
        if (options.Raw("bitmaps") is JsonArray { Count: > 0 } bitmaps)
        {
            throw BlockException.Invalid($"Bitmap '{bitmaps[0]}' is not found");
        }

        var allocationDepth = options.GetBool("allocation-depth", false);
        return settings => CreateAsync(settings, name ?? settings.Node.NodeName, description, allocationDepth);
    }

    private async ValueTask<BlockExport> CreateAsync(BlockExportSettings settings, string name, string? description, bool allocationDepth)
    {
        var server = _server() ?? throw BlockException.Invalid("NBD server not running");
        if (server.Exports.Any(e => e.Name == name))
        {
            throw BlockException.Invalid($"NBD server already has export named '{name}'");
        }

        var export = new NbdBlockExport(settings, server, name);
        try
        {
            server.AddExport(new NbdExportOptions
            {
                Name = name, Description = description, Node = export.Root, Writable = settings.Writable, AllocationDepth = allocationDepth,
                Scheduler = settings.Scheduler,
            });
        }
        catch
        {
            await export.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return export;
    }
}
