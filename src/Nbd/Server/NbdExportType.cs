using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Bitmaps;
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
    private readonly BlockGraph _graph;

    /// <param name="server">The NBD server running now (nbd-server-start), if any.</param>
    /// <param name="graph">Where bitmaps named with their node are looked up.</param>
    public NbdExportType(Func<NbdServer?> server, BlockGraph graph)
    {
        _server = server;
        _graph = graph;
    }

    public string Name => TypeName;

    public Func<BlockExportSettings, ValueTask<BlockExport>> ReadOptions(OptionReader options)
    {
        var name = options.GetString("name");
        var description = options.GetString("description");
        var bitmaps = ReadBitmaps(options);
        var allocationDepth = options.GetBool("allocation-depth", false);
        return settings => CreateAsync(settings, name ?? settings.Node.NodeName, description, allocationDepth, bitmaps);
    }

    /// <summary>'bitmaps': BlockDirtyBitmapOrStr, a name or {"node", "name"}.</summary>
    private static List<BitmapSource> ReadBitmaps(OptionReader options)
    {
        var list = new List<BitmapSource>();
        if (options.Raw("bitmaps") is not JsonArray array)
        {
            return list;
        }

        for (var i = 0; i < array.Count; i++)
        {
            var path = options.FullName($"bitmaps[{i}]");
            list.Add(array[i] switch
            {
                JsonValue v when v.GetValueKind() == JsonValueKind.String => new BitmapSource(null, v.GetValue<string>()),
                JsonObject o => new BitmapSource(
                    o["node"]?.GetValue<string>() ?? throw BlockException.Invalid($"Parameter '{path}.node' is missing"),
                    o["name"]?.GetValue<string>() ?? throw BlockException.Invalid($"Parameter '{path}.name' is missing")),
                _ => throw BlockException.Invalid($"Invalid parameter type for '{path}', expected: BlockDirtyBitmapOrStr"),
            });
        }

        return list;
    }

    /// <summary>
    /// QEMU's nbd_export_create: a bitmap named alone is looked for on the exported node and down
    /// its filters and backing chain; it must be usable, and a read-only export cannot offer one
    /// that still records writes of a writable node.
    /// </summary>
    private static List<BlockDirtyBitmap> FindBitmaps(BlockExportSettings settings, IReadOnlyList<BitmapSource> sources, BlockGraph graph)
    {
        var found = new List<BlockDirtyBitmap>();
        foreach (var source in sources)
        {
            BlockDirtyBitmap? bitmap = null;
            BlockNode? owner;
            if (source.Node is not null)
            {
                (owner, bitmap) = BitmapLookup.Find(graph, source.Node, source.Name);
            }
            else
            {
                for (owner = settings.Node; owner is not null && bitmap is null; owner = bitmap is null ? Below(owner) : owner)
                {
                    bitmap = owner.FindDirtyBitmap(source.Name);
                }
            }

            if (bitmap is null || owner is null)
            {
                throw new BlockException(Errno.ENOENT, $"Bitmap '{source.Name}' is not found");
            }

            bitmap.Check(BitmapChecks.AllowReadOnly);
            if (!settings.Writable && !owner.IsReadOnly && bitmap.Enabled)
            {
                throw BlockException.Invalid($"Enabled bitmap '{source.Name}' incompatible with readonly export");
            }

            found.Add(bitmap);
        }

        return found;
    }

    /// <summary>QEMU's bdrv_filter_or_cow_bs: a filter's child or a format's backing node.</summary>
    private static BlockNode? Below(BlockNode node) => node is ForwardingNode f ? f.Target : node.BackingChild?.Node;

    private async ValueTask<BlockExport> CreateAsync(BlockExportSettings settings, string name, string? description, bool allocationDepth, List<BitmapSource> sources)
    {
        var server = _server() ?? throw BlockException.Invalid("NBD server not running");
        if (server.Exports.Any(e => e.Name == name))
        {
            throw BlockException.Invalid($"NBD server already has export named '{name}'");
        }

        var bitmaps = FindBitmaps(settings, sources, _graph);
        var export = new NbdBlockExport(settings, server, name, bitmaps);
        try
        {
            server.AddExport(new NbdExportOptions
            {
                Name = name, Description = description, Node = export.Root, Writable = settings.Writable, AllocationDepth = allocationDepth,
                Bitmaps = bitmaps, Scheduler = settings.Scheduler,
                Polling = settings.Scheduler is null ? RequestPolling.MainLoop : RequestPolling.Off,
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
