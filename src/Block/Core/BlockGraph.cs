using System.Text.Json.Nodes;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>
/// All nodes by node-name and the drivers that make them. Nodes are opened from one JSON tree
/// (keyval and QMP give the same tree) and closed parents-first.
/// </summary>
public sealed class BlockGraph
{
    private readonly Dictionary<string, IBlockDriver> _drivers = new(StringComparer.Ordinal);
    private readonly List<BlockNode> _nodes = new();
    private readonly object _gate = new();
    private long _autoName;

    /// <summary>Makes <paramref name="driver"/> available by its name, with its probe and its file names if it has them.</summary>
    public void Register(IBlockDriver driver)
    {
        _drivers[driver.Name] = driver;
        if (driver is IFormatProbe probe)
        {
            Probes.Add(probe);
        }
    }

    /// <summary>The probes of the registered formats (and of formats known only by their magic).</summary>
    public FormatProber Probes { get; } = new();

    /// <summary>Objects that nodes refer to by id (throttle groups), added by object-add / --object.</summary>
    public NamedObjects Objects { get; } = new();

    public IEnumerable<string> DriverNames => _drivers.Keys;

    /// <summary>Where events raised by nodes go (BLOCK_IMAGE_CORRUPTED); the daemon hands them to its monitors.</summary>
    public Action<string, JsonObject>? EventSink { get; set; }

    public void Emit(string name, JsonObject data) => EventSink?.Invoke(name, data);

    public bool HasDriver(string name) => _drivers.ContainsKey(name);

    public IBlockDriver? TryGetDriver(string name) => _drivers.GetValueOrDefault(name);

    /// <summary>
    /// The protocol driver's options for <paramref name="fileName"/> (QEMU's bdrv_find_protocol): the
    /// protocol that claims the name, otherwise a local file.
    /// </summary>
    public JsonObject ProtocolOptions(string fileName)
    {
        foreach (var driver in _drivers.Values)
        {
            if (driver is IProtocolFileNames names && names.ParseFileName(fileName) is { } options)
            {
                return options;
            }
        }

        return new JsonObject { ["driver"] = "file", ["filename"] = fileName };
    }

    public IReadOnlyList<BlockNode> Nodes
    {
        get
        {
            lock (_gate)
            {
                return _nodes.ToArray();
            }
        }
    }

    public BlockNode? TryFind(string nodeName)
    {
        lock (_gate)
        {
            return _nodes.Find(n => n.NodeName == nodeName);
        }
    }

    public BlockNode Find(string nodeName) =>
        TryFind(nodeName) ?? throw new BlockException(Errno.ENOENT, $"Cannot find device='' nor node-name='{nodeName}'");

    /// <summary>blockdev-add: opens a node (and its inline children) and enters it in the graph.</summary>
    public async ValueTask<BlockNode> AddAsync(JsonObject options)
    {
        int before;
        List<string> conflictsBefore;
        lock (_gate)
        {
            before = _nodes.Count;
            conflictsBefore = BlockNode.PermissionConflicts(_nodes);
        }

        try
        {
            var node = await OpenAsync(options, string.Empty).ConfigureAwait(false);

            // The new node's edges to nodes already in the graph must suit those nodes' other users,
            // as QEMU checks each child it attaches.
            List<string> conflictsAfter;
            lock (_gate)
            {
                conflictsAfter = BlockNode.PermissionConflicts(_nodes);
            }

            if (conflictsAfter.FirstOrDefault(c => !conflictsBefore.Contains(c)) is { } conflict)
            {
                throw new BlockException(Errno.EPERM, conflict);
            }

            return node;
        }
        catch
        {
            // Children opened inline before the failure go away with it.
            List<BlockNode> added;
            lock (_gate)
            {
                added = _nodes.Skip(before).ToList();
                _nodes.RemoveRange(before, added.Count);
            }

            for (var i = added.Count - 1; i >= 0; i--)
            {
                await added[i].DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    internal async ValueTask<BlockNode> OpenAsync(JsonObject options, string prefix)
    {
        var reader = new OptionReader(options, prefix);
        var driverName = reader.RequireString("driver");
        if (!_drivers.TryGetValue(driverName, out var driver))
        {
            throw BlockException.Invalid($"Parameter '{reader.FullName("driver")}' does not accept value '{driverName}'");
        }

        var nodeName = reader.GetString("node-name");
        if (nodeName is not null)
        {
            ValidateNodeName(nodeName);
        }

        var readOnly = reader.GetBool("read-only", false);
        var autoReadOnly = reader.GetBool("auto-read-only", false);
        var forceShare = reader.GetBool("force-share", false);
        var discard = reader.GetEnum("discard", DiscardValues) ?? false;
        var detectZeroes = reader.GetEnum("detect-zeroes", DetectZeroesValues) ?? DetectZeroes.Off;
        var cache = new CacheOptions(false, false);
        if (reader.GetObject("cache") is { } c)
        {
            cache = new CacheOptions(c.GetBool("direct", false), c.GetBool("no-flush", false));
            c.EnsureAllConsumed();
        }

        if (forceShare && !readOnly)
        {
            throw BlockException.Invalid("force-share=on can only be used with read-only images");
        }

        if (detectZeroes == DetectZeroes.Unmap && !discard)
        {
            throw BlockException.Invalid("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
        }

        nodeName ??= NewAutoName();
        lock (_gate)
        {
            if (_nodes.Exists(n => n.NodeName == nodeName))
            {
                throw BlockException.Invalid($"Duplicate nodes with node-name='{nodeName}'");
            }
        }

        var context = new BlockOpenContext(this, nodeName, readOnly, autoReadOnly, cache, discard, forceShare);
        var node = await driver.OpenAsync(context, reader).ConfigureAwait(false);
        try
        {
            reader.EnsureAllConsumed();
            node.DiscardUnmap = discard;
            node.DetectZeroes = detectZeroes;
            node.Cache = cache;
            lock (_gate)
            {
                if (_nodes.Exists(n => n.NodeName == nodeName))
                {
                    throw BlockException.Invalid($"Duplicate nodes with node-name='{nodeName}'");
                }

                _nodes.Add(node);
            }
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return node;
    }

    /// <summary>A name for a node the user did not name ("#block001", …), as QEMU gives implicit nodes.</summary>
    public string NewAutoName() => $"#block{Interlocked.Increment(ref _autoName):D3}";

    /// <summary>
    /// Enters a node made outside the drivers (a block job's filter) under its name; fails when the
    /// name is taken, as blockdev-add does. <see cref="RemoveAsync"/> takes it out and closes it.
    /// </summary>
    public void Insert(BlockNode node)
    {
        lock (_gate)
        {
            if (_nodes.Exists(n => n.NodeName == node.NodeName))
            {
                throw BlockException.Invalid($"Duplicate nodes with node-name='{node.NodeName}'");
            }

            _nodes.Add(node);
        }
    }

    private static readonly Dictionary<string, bool> DiscardValues = new()
    {
        ["ignore"] = false, ["off"] = false, ["unmap"] = true, ["on"] = true,
    };

    private static readonly Dictionary<string, DetectZeroes> DetectZeroesValues = new()
    {
        ["off"] = DetectZeroes.Off, ["on"] = DetectZeroes.On, ["unmap"] = DetectZeroes.Unmap,
    };

    /// <summary>QEMU's rule: a letter first, then letters, digits, '-', '.', '_'; at most 31 characters.</summary>
    public static void ValidateNodeName(string name)
    {
        var ok = name.Length is > 0 and <= 31 && char.IsAsciiLetter(name[0]);
        foreach (var ch in name)
        {
            ok &= char.IsAsciiLetterOrDigit(ch) || ch is '-' or '.' or '_';
        }

        if (!ok)
        {
            throw BlockException.Invalid("Invalid node-name: '" + name + "'");
        }
    }

    /// <summary>blockdev-del: closes a node that nothing uses and removes it from the graph.</summary>
    public async ValueTask RemoveAsync(string nodeName)
    {
        BlockNode node;
        lock (_gate)
        {
            node = _nodes.Find(n => n.NodeName == nodeName)
                   ?? throw new BlockException(Errno.ENOENT, $"Failed to find node with node-name='{nodeName}'");
            if (node.UserCount > 0)
            {
                throw new BlockException(Errno.EBUSY, $"Node {nodeName} is in use");
            }

            _nodes.Remove(node);
        }

        await CloseWithOrphansAsync(node).ConfigureAwait(false);
    }

    /// <summary>Closes a node, then every child it opened inline that nobody else uses.</summary>
    private async ValueTask CloseWithOrphansAsync(BlockNode node)
    {
        var children = node.Children.Select(c => c.Node).ToArray();
        await node.DisposeAsync().ConfigureAwait(false);
        foreach (var child in children)
        {
            bool orphan;
            lock (_gate)
            {
                orphan = child.UserCount == 0 && child.NodeName.StartsWith('#') && _nodes.Remove(child);
            }

            if (orphan)
            {
                await CloseWithOrphansAsync(child).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Flushes and closes every node, parents before children.</summary>
    public async ValueTask CloseAllAsync()
    {
        List<BlockNode> all;
        lock (_gate)
        {
            all = new List<BlockNode>(_nodes);
            _nodes.Clear();
        }

        for (var i = all.Count - 1; i >= 0; i--)
        {
            var n = all[i];
            try
            {
                if (!n.IsReadOnly)
                {
                    await n.FlushAsync().ConfigureAwait(false);
                }
            }
            catch (BlockException)
            {
                // Closing goes on; the failure was reported to whoever issued the failing write.
            }

            await n.DisposeAsync().ConfigureAwait(false);
        }
    }
}
