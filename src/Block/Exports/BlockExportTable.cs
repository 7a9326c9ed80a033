using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Exports;

/// <summary>
/// Every block export, whatever its type: --export, block-export-add/del, nbd-server-add/remove and
/// query-block-exports all go through here. Types are looked up by their 'type' name, so adding a
/// type is one registration. Errors read as QEMU's blk_exp_add and qmp_block_export_del word them.
/// </summary>
public sealed class BlockExportTable
{
    /// <summary>QAPI's BlockExportType: the names QEMU knows, so a type not built here is "not supported" rather than unknown.</summary>
    private static readonly string[] s_qapiTypes = ["nbd", "vhost-user-blk", "fuse", "vduse-blk"];

    private readonly Dictionary<string, IBlockExportType> _types = new(StringComparer.Ordinal);
    private readonly List<BlockExport> _exports = new();
    private readonly BlockGraph _graph;
    private readonly Func<string, TaskScheduler> _ioThread;

    /// <param name="graph">Where node-name is looked up.</param>
    /// <param name="ioThread">Finds an iothread by id, or throws QEMU's "iothread … not found".</param>
    public BlockExportTable(BlockGraph graph, Func<string, TaskScheduler> ioThread)
    {
        _graph = graph;
        _ioThread = ioThread;
    }

    /// <summary>Raised once an export is gone after block-export-del (QMP's BLOCK_EXPORT_DELETED).</summary>
    public event Action<BlockExport>? Deleted;

    /// <summary>The exports, oldest first.</summary>
    public IReadOnlyList<BlockExport> All
    {
        get
        {
            lock (_exports)
            {
                return [.. _exports];
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_exports)
            {
                return _exports.Count;
            }
        }
    }

    public void Register(IBlockExportType type) => _types.Add(type.Name, type);

    public BlockExport? Find(string id)
    {
        lock (_exports)
        {
            return _exports.Find(e => e.Id == id);
        }
    }

    /// <summary>block-export-add / --export: reads the options, checks them in QEMU's order and starts the export.</summary>
    public async ValueTask<BlockExport> AddAsync(JsonObject options)
    {
        var r = new OptionReader(options);
        var typeName = r.RequireString("type");
        var id = r.RequireString("id");
        var nodeName = r.RequireString("node-name");
        var writable = r.GetBool("writable", false);
        var writeThrough = r.GetBool("writethrough", false);
        var ioThreadId = r.GetString("iothread");

        // Means nothing here: QEMU refuses an export only when its node cannot move to the iothread,
        // and a node here serves requests from any scheduler, so there is nothing to pin or refuse.
        r.GetBool("fixed-iothread");
        if (!_types.TryGetValue(typeName, out var type))
        {
            throw s_qapiTypes.Contains(typeName)
                ? BlockException.NotSupported($"Export type '{typeName}' is not supported")
                : BlockException.Invalid($"Parameter 'type' does not accept value '{typeName}'");
        }

        var create = type.ReadOptions(r);
        r.EnsureAllConsumed();
        if (Find(id) is not null)
        {
            throw BlockException.Invalid($"Block export id '{id}' is already in use");
        }

        var node = _graph.Find(nodeName);
        if (writable && node.IsReadOnly)
        {
            throw BlockException.Invalid("Cannot export read-only node as writable");
        }

        var scheduler = ioThreadId is null ? null : _ioThread(ioThreadId);
        var export = await create(new BlockExportSettings(id, node, writable, scheduler, writeThrough)).ConfigureAwait(false);
        lock (_exports)
        {
            _exports.Add(export);
        }

        return export;
    }

    /// <summary>
    /// block-export-del: stops the export and releases its node. Safe mode refuses while clients are
    /// connected; hard mode disconnects them first.
    /// </summary>
    public async ValueTask DeleteAsync(string id, bool hard)
    {
        var export = Find(id) ?? throw BlockException.Invalid($"Export '{id}' is not found");
        if (export.ShuttingDown)
        {
            throw BlockException.Invalid($"Export '{id}' is already shutting down");
        }

        if (!hard && export.ClientCount > 0)
        {
            throw new BlockException(Errno.EBUSY, $"export '{id}' still in use", hint: "Use mode='hard' to force client disconnect");
        }

        export.ShuttingDown = true;
        try
        {
            await export.RequestShutdownAsync(hard).ConfigureAwait(false);
        }
        catch
        {
            export.ShuttingDown = false;
            throw;
        }

        await export.DisposeAsync().ConfigureAwait(false);
        lock (_exports)
        {
            _exports.Remove(export);
        }

        Deleted?.Invoke(export);
    }

    /// <summary>Deletes every export of one type, disconnecting clients (nbd-server-stop).</summary>
    public async ValueTask DeleteAllAsync(string type)
    {
        foreach (var export in All.Where(e => e.Type == type))
        {
            await DeleteAsync(export.Id, hard: true).ConfigureAwait(false);
        }
    }

    /// <summary>Shuts every export down and releases its node, on the way out of the daemon (no events).</summary>
    public async ValueTask CloseAllAsync()
    {
        foreach (var export in All)
        {
            try
            {
                await export.RequestShutdownAsync(hard: true).ConfigureAwait(false);
            }
            catch (BlockException)
            {
                // Shutting down regardless.
            }

            await export.DisposeAsync().ConfigureAwait(false);
        }

        lock (_exports)
        {
            _exports.Clear();
        }
    }

    /// <summary>
    /// Points every export that serves <paramref name="old"/> at <paramref name="replacement"/>,
    /// each after draining its requests (a snapshot puts an overlay above the exported node).
    /// </summary>
    public async ValueTask ReplaceNodeAsync(BlockNode old, BlockNode replacement)
    {
        foreach (var export in All)
        {
            if (ReferenceEquals(export.Root.Node, old))
            {
                await export.Root.SwapAsync(replacement).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Lets exports see a node's new size or mode after block_resize or a reopen.</summary>
    public void SyncAll()
    {
        foreach (var export in All)
        {
            export.Root.Sync();
        }
    }
}
