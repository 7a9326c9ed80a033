using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Filters.Throttle;
using ExportServer.Fuse;
using ExportServer.Nbd.Client;
using ExportServer.Nbd.Server;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Daemon;

/// <summary>
/// The daemon's state and its handlers: the command line and QMP parse their arguments into the
/// same JSON trees and call these methods, so both behave alike.
/// </summary>
internal sealed class StorageDaemon : IAsyncDisposable
{
    private readonly ILoggerFactory _loggers;
    private readonly Dictionary<string, ExportEntry> _exports = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IoThread> _ioThreads = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _quit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, Chardev> _chardevs = new(StringComparer.Ordinal);
    private readonly List<Chardev> _monitors = new();
    private readonly HashSet<BlockNode> _monitorOwned = new(ReferenceEqualityComparer.Instance);
    private NbdServer? _nbd;

    public StorageDaemon(ILoggerFactory loggers)
    {
        _loggers = loggers;
        BlockDrivers.RegisterBuiltIn(Graph);
        NbdDriver.Register(Graph, loggers.CreateLogger("ExportServer.NbdClient"));
        Graph.EventSink = (name, data) => Emit(name, data);
    }

    public BlockGraph Graph { get; } = new();

    public NbdServer? Nbd => _nbd;

    public IReadOnlyCollection<ExportEntry> Exports => _exports.Values;

    /// <summary>Completes when a quit was requested (signal or QMP quit).</summary>
    public Task QuitRequested => _quit.Task;

    public void RequestQuit() => _quit.TrySetResult();

    /// <summary>Where events go (the QMP monitors); unset, events are dropped.</summary>
    public Action<string, JsonObject?>? EventSink { get; set; }

    public void Emit(string name, JsonObject? data) => EventSink?.Invoke(name, data);

    /// <summary>The node an export serves now (an export follows its root through graph changes).</summary>
    public static BlockNode ExportedNode(ExportEntry e) => e.Node is BlockRoot r ? r.Node : e.Node;

    /// <summary>
    /// Points every export that serves <paramref name="old"/> at <paramref name="replacement"/>,
    /// each after draining its requests (a snapshot puts an overlay above the exported node).
    /// </summary>
    public async ValueTask ReplaceExportedNodeAsync(BlockNode old, BlockNode replacement)
    {
        foreach (var e in _exports.Values)
        {
            if (e.Node is BlockRoot r && ReferenceEquals(r.Node, old))
            {
                await r.SwapAsync(replacement).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Lets exports see a node's new size or mode after block_resize or a reopen.</summary>
    public void SyncExports()
    {
        foreach (var e in _exports.Values)
        {
            (e.Node as BlockRoot)?.Sync();
        }
    }

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

    /// <summary>nbd-server-start / --nbd-server.</summary>
    public void NbdServerStart(JsonObject options)
    {
        var r = new OptionReader(options);
        var addr = r.GetObject("addr") ?? throw BlockException.Invalid("Parameter 'addr' is missing");
        if (r.GetString("tls-creds") is { } creds)
        {
            throw BlockException.NotSupported($"No TLS credentials with id '{creds}'");
        }

        r.GetString("tls-authz");
        var max = r.GetInt("max-connections") ?? 0;
        if (max < 0 || max > int.MaxValue)
        {
            throw BlockException.Invalid("Parameter 'max-connections' expects uint32");
        }

        var endpoints = SocketAddressParser.Parse(addr);
        r.EnsureAllConsumed();
        if (_nbd is not null)
        {
            throw BlockException.Invalid("NBD server already running");
        }

        var server = new NbdServer(new NbdServerOptions { EndPoints = endpoints, MaxConnections = (int)max }, _loggers.CreateLogger("ExportServer.Nbd"));
        server.Start();
        _nbd = server;
    }

    /// <summary>nbd-server-stop: removes every NBD export and closes the server.</summary>
    public async ValueTask NbdServerStopAsync()
    {
        var server = _nbd ?? throw BlockException.Invalid("NBD server not running");
        foreach (var e in _exports.Values.Where(e => e.Type == "nbd").ToList())
        {
            await BlockExportDelAsync(e.Id, hard: true).ConfigureAwait(false);
        }

        _nbd = null;
        await server.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>block-export-add / --export.</summary>
    public async ValueTask BlockExportAddAsync(JsonObject options)
    {
        var r = new OptionReader(options);
        var type = r.RequireString("type");
        var id = r.RequireString("id");
        var nodeName = r.RequireString("node-name");
        var writable = r.GetBool("writable", false);
        r.GetBool("writethrough");
        var ioThreadId = r.GetString("iothread");
        r.GetBool("fixed-iothread");

        switch (type)
        {
            case "nbd":
                var name = r.GetString("name") ?? nodeName;
                var description = r.GetString("description");
                if (r.Raw("bitmaps") is JsonArray { Count: > 0 } bitmaps)
                {
                    throw BlockException.Invalid($"Bitmap '{bitmaps[0]}' is not found");
                }

                var allocationDepth = r.GetBool("allocation-depth", false);
                r.EnsureAllConsumed();
                CheckNewExport(id);
                var found = Graph.Find(nodeName);
                var scheduler = ResolveIoThread(ioThreadId);
                var server = _nbd ?? throw BlockException.Invalid("NBD server not running");
                if (writable && found.IsReadOnly)
                {
                    throw BlockException.Invalid("Cannot export read-only node as writable");
                }

                if (server.Exports.Any(e => e.Name == name))
                {
                    throw BlockException.Invalid($"NBD server already has export named '{name}'");
                }

                var node = new BlockRoot(found);
                server.AddExport(new NbdExportOptions { Name = name, Description = description, Node = node, Writable = writable, AllocationDepth = allocationDepth, Scheduler = scheduler });
                _exports[id] = new ExportEntry(id, "nbd", node, async hard =>
                {
                    await server.RemoveExportAsync(name, hard).ConfigureAwait(false);
                    await node.DisposeAsync().ConfigureAwait(false);
                });
                break;
            case "fuse":
                var mountpoint = r.RequireString("mountpoint");
                var growable = r.GetBool("growable", false);
                var allowOther = r.GetEnum("allow-other", AllowOtherValues) ?? FuseAllowOther.Auto;
                r.EnsureAllConsumed();
                CheckNewExport(id);
                var fuseFound = Graph.Find(nodeName);
                ResolveIoThread(ioThreadId);
                if (writable && fuseFound.IsReadOnly)
                {
                    throw BlockException.Invalid("Cannot export read-only node as writable");
                }

                var fuseNode = new BlockRoot(fuseFound);

                FuseExport fuse;
                try
                {
                    fuse = FuseExport.Mount(
                        new FuseExportOptions(id, fuseNode, mountpoint) { Writable = writable, Growable = growable, AllowOther = allowOther },
                        _loggers.CreateLogger("ExportServer.Fuse"));
                }
                catch
                {
                    await fuseNode.DisposeAsync().ConfigureAwait(false);
                    throw;
                }

                _exports[id] = new ExportEntry(id, "fuse", fuseNode, async _ =>
                {
                    await fuse.DisposeAsync().ConfigureAwait(false);
                    await fuseNode.DisposeAsync().ConfigureAwait(false);
                });
                break;
            case "vhost-user-blk" or "vduse-blk":
                throw BlockException.NotSupported($"Export type '{type}' is not supported");
            default:
                throw BlockException.Invalid($"Parameter 'type' does not accept value '{type}'");
        }

    }

    private static readonly Dictionary<string, FuseAllowOther> AllowOtherValues = new()
    {
        ["on"] = FuseAllowOther.On, ["off"] = FuseAllowOther.Off, ["auto"] = FuseAllowOther.Auto,
    };

    private void CheckNewExport(string id)
    {
        if (_exports.ContainsKey(id))
        {
            throw BlockException.Invalid($"Block export id '{id}' is already in use");
        }
    }

    private IoThread? ResolveIoThread(string? id)
    {
        if (id is null)
        {
            return null;
        }

        return _ioThreads.TryGetValue(id, out var t) ? t : throw BlockException.Invalid($"iothread \"{id}\" not found");
    }

    /// <summary>block-export-del: removes an export; without hard, refuses while clients are connected.</summary>
    public async ValueTask BlockExportDelAsync(string id, bool hard)
    {
        if (!_exports.TryGetValue(id, out var e))
        {
            throw BlockException.Invalid($"Export '{id}' is not found");
        }

        e.ShuttingDown = true;
        try
        {
            await e.RemoveAsync(hard).ConfigureAwait(false);
        }
        catch
        {
            e.ShuttingDown = false;
            throw;
        }

        _exports.Remove(id);
        Emit("BLOCK_EXPORT_DELETED", new JsonObject { ["id"] = id });
    }

    /// <summary>object-add / --object.</summary>
    public void ObjectAdd(JsonObject options)
    {
        var r = new OptionReader(options);
        var type = r.RequireString("qom-type");
        var id = r.RequireString("id");
        switch (type)
        {
            case "iothread":
                r.GetInt("poll-max-ns");
                r.GetInt("poll-grow");
                r.GetInt("poll-shrink");
                r.GetInt("aio-max-batch");
                r.GetInt("thread-pool-min");
                r.GetInt("thread-pool-max");
                r.EnsureAllConsumed();
                CheckNewObjectId(id);
                _ioThreads[id] = new IoThread(id);
                break;
            case ThrottleGroups.QomType:
                CheckNewObjectId(id);
                ThrottleGroups.Add(Graph.Objects, id, r);
                break;
            default:
                throw BlockException.Invalid($"Parameter 'qom-type' does not accept value '{type}'");
        }
    }

    /// <summary>Object ids are unique across every kind of object, as in QEMU's /objects container.</summary>
    private void CheckNewObjectId(string id)
    {
        if (_ioThreads.ContainsKey(id) || Graph.Objects.Contains(id))
        {
            throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
        }
    }

    /// <summary>object-del: removes an object nothing refers to.</summary>
    public void ObjectDel(string id)
    {
        if (ThrottleGroups.TryDelete(Graph.Objects, id))
        {
            return;
        }

        if (!_ioThreads.TryGetValue(id, out var thread))
        {
            throw BlockException.Invalid($"object '{id}' not found");
        }

        if (_exports.Count > 0)
        {
            throw BlockException.Invalid($"object '{id}' can't be deleted");
        }

        _ioThreads.Remove(id);
        thread.Dispose();
    }

    /// <summary>--chardev: only unix server sockets, the kind a QMP monitor listens on.</summary>
    public void ChardevAdd(JsonObject options)
    {
        var r = new OptionReader(options);
        var backend = r.RequireString("backend");
        var id = r.RequireString("id");
        if (backend != "socket")
        {
            throw BlockException.NotSupported($"chardev backend '{backend}' is not supported (only 'socket')");
        }

        var path = r.RequireString("path");
        var server = r.GetBool("server", false);
        var wait = r.GetBool("wait", true);
        r.GetBool("telnet");
        r.GetBool("tn3270");
        r.GetBool("websocket");
        r.GetBool("nodelay");
        r.GetInt("reconnect");
        r.EnsureAllConsumed();
        if (!server)
        {
            throw BlockException.NotSupported($"chardev '{id}': only server=on sockets are supported");
        }

        if (_chardevs.ContainsKey(id))
        {
            throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
        }

        _chardevs[id] = new Chardev(id, path, server, wait);
    }

    /// <summary>--monitor: a QMP monitor on a chardev (the protocol is served by the monitor subsystem).</summary>
    public Chardev MonitorAdd(JsonObject options)
    {
        var r = new OptionReader(options);
        var id = r.RequireString("chardev");
        var mode = r.GetString("mode") ?? "control";
        r.GetBool("pretty");
        r.GetString("id");
        r.EnsureAllConsumed();
        if (mode != "control")
        {
            throw BlockException.Invalid("Only QMP is supported");
        }

        if (!_chardevs.TryGetValue(id, out var chardev))
        {
            throw BlockException.Invalid($"chardev \"{id}\" not found");
        }

        if (chardev.InUse)
        {
            throw BlockException.Invalid($"Device '{id}' is in use");
        }

        chardev.InUse = true;
        _monitors.Add(chardev);
        return chardev;
    }

    /// <summary>Stops the servers (in-flight requests finish), flushes and closes every node.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var e in _exports.Values.ToList())
        {
            try
            {
                await e.RemoveAsync(true).ConfigureAwait(false);
            }
            catch (BlockException)
            {
                // Shutting down regardless.
            }
        }

        _exports.Clear();
        if (_nbd is not null)
        {
            await _nbd.DisposeAsync().ConfigureAwait(false);
            _nbd = null;
        }

        await Graph.CloseAllAsync().ConfigureAwait(false);
        foreach (var t in _ioThreads.Values)
        {
            t.Dispose();
        }

        _ioThreads.Clear();
    }
}
