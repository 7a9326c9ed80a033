using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;

namespace ExportServer.Server.Daemon;

/// <summary>
/// --object, object-add and object-del: iothreads, kept here, and the kinds of <see cref="ObjectTypes"/>,
/// kept among the graph's named objects.
/// </summary>
internal sealed class ObjectTable : IDisposable
{
    private readonly Dictionary<string, IoThread> _ioThreads = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IObjectType> _types = ObjectTypes.All.ToDictionary(t => t.QomType, StringComparer.Ordinal);
    private readonly BlockGraph _graph;
    private readonly BlockExportTable _exports;

    /// <param name="exports">While any export exists, no iothread is deleted: one might run on it.</param>
    public ObjectTable(BlockGraph graph, BlockExportTable exports)
    {
        _graph = graph;
        _exports = exports;
    }

    /// <summary>object-add / --object.</summary>
    public void Add(JsonObject options)
    {
        var r = new OptionReader(options);
        var type = r.RequireString("qom-type");
        var id = r.RequireString("id");
        switch (type)
        {
            case "iothread":
                ReadIoThreadTuning(r);
                r.EnsureAllConsumed();
                CheckNewId(id);
                _ioThreads[id] = new IoThread(id);
                break;
            default:
                if (!_types.TryGetValue(type, out var kind))
                {
                    throw BlockException.Invalid($"Parameter 'qom-type' does not accept value '{type}'");
                }

                CheckNewId(id);
                kind.Add(_graph.Objects, id, r);
                break;
        }
    }

    private static readonly string[] IoThreadTuning = ["poll-max-ns", "poll-grow", "poll-shrink", "aio-max-batch", "thread-pool-min", "thread-pool-max"];

    /// <summary>
    /// An iothread's tuning is checked as QEMU checks it (in the order given) and then means nothing
    /// here: QEMU's AioContext polling and batching and its worker pool for blocking calls have no
    /// counterpart, as requests run on the .NET thread pool and the file driver's own I/O pool.
    /// </summary>
    private static void ReadIoThreadTuning(OptionReader r)
    {
        foreach (var (key, _) in r.Options)
        {
            if (Array.IndexOf(IoThreadTuning, key) >= 0 && r.GetInt(key) < 0)
            {
                throw BlockException.Invalid($"{key} value must be in range [0, {long.MaxValue}]");
            }
        }

        var min = r.GetInt("thread-pool-min") ?? 0;
        var max = r.GetInt("thread-pool-max") ?? 64;
        if (min > max || max <= 0)
        {
            throw BlockException.Invalid("bad thread-pool-min/thread-pool-max values");
        }
    }

    /// <summary>Object ids are unique across every kind of object, as in QEMU's /objects container.</summary>
    private void CheckNewId(string id)
    {
        if (_ioThreads.ContainsKey(id) || _graph.Objects.Contains(id))
        {
            throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
        }
    }

    /// <summary>object-del: removes an object nothing refers to.</summary>
    public void Delete(string id)
    {
        foreach (var kind in _types.Values)
        {
            if (kind.TryDelete(_graph.Objects, id))
            {
                return;
            }
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

    /// <summary>The iothread an export names.</summary>
    public TaskScheduler FindIoThread(string id) =>
        _ioThreads.TryGetValue(id, out var t) ? t : throw BlockException.Invalid($"iothread \"{id}\" not found");

    public void Dispose()
    {
        foreach (var t in _ioThreads.Values)
        {
            t.Dispose();
        }

        _ioThreads.Clear();
    }
}
