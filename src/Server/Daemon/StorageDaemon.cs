using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;
using ExportServer.Block.Jobs;
using ExportServer.Nbd.Client;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Daemon;

/// <summary>
/// The daemon's state: the node graph, exports, the NBD server, objects and chardevs. The command
/// line and QMP parse their arguments into the same JSON trees and call the same handlers, so both
/// behave alike.
/// </summary>
internal sealed class StorageDaemon : IAsyncDisposable
{
    private readonly TaskCompletionSource _quit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly HashSet<BlockNode> _monitorOwned = new(ReferenceEqualityComparer.Instance);

    public StorageDaemon(ILoggerFactory loggers)
    {
        BlockDrivers.RegisterBuiltIn(Graph);
        NbdDriver.Register(Graph, loggers.CreateLogger("ExportServer.NbdClient"));
        Graph.EventSink = (name, data) => Emit(name, data);
        Exports = new BlockExportTable(Graph, FindIoThread);
        Objects = new ObjectTable(Graph, Exports);
        Exports.Deleted += e => Emit("BLOCK_EXPORT_DELETED", new JsonObject { ["id"] = e.Id });
        Nbd = new NbdServerHost(Exports, Graph.Objects, loggers.CreateLogger("ExportServer.Nbd"));
        ExportTypes.RegisterBuiltIn(Exports, Graph, Nbd, loggers);
        Jobs = new JobRegistry(new Qmp.QmpJobEvents(this));
    }

    public BlockGraph Graph { get; } = new();

    public BlockExportTable Exports { get; }

    /// <summary>The jobs, from creation until dismissed; they report through the daemon's events.</summary>
    public JobRegistry Jobs { get; }

    public NbdServerHost Nbd { get; }

    public ObjectTable Objects { get; }

    public ChardevTable Chardevs { get; } = new();

    /// <summary>Completes when a quit was requested (signal or QMP quit).</summary>
    public Task QuitRequested => _quit.Task;

    public void RequestQuit() => _quit.TrySetResult();

    /// <summary>Where events go (the QMP monitors); unset, events are dropped.</summary>
    public Action<string, JsonObject?>? EventSink { get; set; }

    public void Emit(string name, JsonObject? data) => EventSink?.Invoke(name, data);

    /// <summary>Points the exports of <paramref name="old"/> at <paramref name="replacement"/> (see <see cref="BlockExportTable.ReplaceNodeAsync"/>).</summary>
    public ValueTask ReplaceExportedNodeAsync(BlockNode old, BlockNode replacement) => Exports.ReplaceNodeAsync(old, replacement);

    /// <summary>Lets exports see a node's new size or mode after block_resize or a reopen.</summary>
    public void SyncExports() => Exports.SyncAll();

    /// <summary>
    /// Whether the node was added with blockdev-add (or --blockdev): like QEMU's monitor reference,
    /// that keeps it open when a job drops it from a chain, until blockdev-del.
    /// </summary>
    public bool IsMonitorOwned(BlockNode node)
    {
        lock (_monitorOwned)
        {
            return _monitorOwned.Contains(node);
        }
    }

    /// <summary>blockdev-del: closes a node nothing uses and drops the monitor's reference to it.</summary>
    public async ValueTask BlockdevDelAsync(string nodeName)
    {
        var node = Graph.TryFind(nodeName);
        await Graph.RemoveAsync(nodeName).ConfigureAwait(false);
        if (node is not null)
        {
            lock (_monitorOwned)
            {
                _monitorOwned.Remove(node);
            }
        }
    }

    /// <summary>blockdev-add / --blockdev: the root node must have a node-name.</summary>
    public async ValueTask<BlockNode> BlockdevAddAsync(JsonObject options)
    {
        if (options["node-name"] is null)
        {
            // QEMU checks the driver before the node name.
            var driver = new OptionReader(options).RequireString("driver");
            if (!Graph.HasDriver(driver))
            {
                throw BlockException.Invalid($"Parameter 'driver' does not accept value '{driver}'");
            }

            throw BlockException.Invalid("'node-name' must be specified for the root node");
        }

        var node = await Graph.AddAsync(options).ConfigureAwait(false);
        lock (_monitorOwned)
        {
            _monitorOwned.Add(node);
        }

        return node;
    }

    private TaskScheduler FindIoThread(string id) => Objects.FindIoThread(id);

    /// <summary>Stops the exports and the NBD server (in-flight requests finish), flushes and closes every node.</summary>
    public async ValueTask DisposeAsync()
    {
        await Exports.CloseAllAsync().ConfigureAwait(false);
        await Nbd.DisposeAsync().ConfigureAwait(false);
        await Graph.CloseAllAsync().ConfigureAwait(false);
        Objects.Dispose();
    }
}
