namespace ExportServer.Block.Core;

/// <summary>
/// A node of the block graph. The public I/O methods (BlockNode.Io.cs) are the one place where
/// bounds, read-only state, alignment, splitting, emulation, notifiers and statistics are handled;
/// drivers override the protected <c>…CoreAsync</c> methods and rely on these preconditions:
/// every request lies inside the node, is aligned to <see cref="BlockLimits.RequestAlignment"/>,
/// is no longer than <see cref="BlockLimits.MaxTransfer"/> and is not empty; writes only reach a
/// writable node.
/// </summary>
public abstract partial class BlockNode : IAsyncDisposable
{
    private readonly List<BlockChild> _children = new();
    private int _inFlight;
    private TaskCompletionSource? _drained;
    private int _disposed;

    protected BlockNode(string nodeName, bool readOnly)
    {
        NodeName = nodeName;
        IsReadOnly = readOnly;
    }

    public string NodeName { get; }

    /// <summary>QEMU's driver name ("file", "raw", "qcow2", …).</summary>
    public abstract string DriverName { get; }

    /// <summary>Size in bytes as seen by users of this node.</summary>
    public virtual long Length { get => _length; protected set => _length = value; }

    private long _length;

    public bool IsReadOnly { get; protected set; }

    public BlockLimits Limits { get; protected set; } = BlockLimits.Default;

    public BlockStats Stats { get; } = new();

    /// <summary>The file name shown in query-named-block-nodes (the image, or a description).</summary>
    public virtual string FileName => FileChild?.Node.FileName ?? string.Empty;

    /// <summary>Whether the driver persists a write flagged FUA by itself; otherwise the engine flushes.</summary>
    protected virtual bool SupportsFua => false;

    /// <summary>Whether <see cref="WriteZeroesCoreAsync"/> is implemented; otherwise the engine writes zero buffers.</summary>
    protected virtual bool SupportsWriteZeroes => false;

    /// <summary>Whether zero writes may be fast (no data written); tells NBD clients about FAST_ZERO.</summary>
    public virtual bool CanFastZero => SupportsWriteZeroes;

    /// <summary>
    /// The unit of compressed writes (a qcow2 cluster), or 0 when the node cannot store compressed
    /// data and refuses <see cref="WriteFlags.Compressed"/> with ENOTSUP. Filters do not forward it,
    /// as QEMU's filters do not implement compressed writes themselves.
    /// </summary>
    public virtual int CompressedWriteSize => 0;

    /// <summary>Whether the node may change size.</summary>
    public virtual bool CanTruncate => false;

    /// <summary>The node's option 'discard': unmap lets discards free space, ignore drops them.</summary>
    public virtual bool DiscardUnmap { get => _discardUnmap; set => _discardUnmap = value; }

    private bool _discardUnmap;

    public IReadOnlyList<BlockChild> Children => _children;

    public BlockChild? FileChild => _children.Find(c => c.Role == ChildRole.File);

    public BlockChild? BackingChild => _children.Find(c => c.Role == ChildRole.Backing);

    /// <summary>
    /// The next layer of the backing chain: the backing child, with any filter on the link skipped
    /// (QEMU's bdrv_backing_chain_next). A job's filter can sit there (intermediate commit's
    /// commit_top); chain walks — block status above, depths, layer lookups — use this, while the
    /// query commands show the link as it is.
    /// </summary>
    public BlockNode? BackingLayer => SkipFilters(BackingChild?.Node);

    /// <summary>The node itself, or for a root or filter the first node below it that is neither (QEMU's bdrv_skip_filters).</summary>
    public static BlockNode? SkipFilters(BlockNode? node)
    {
        while (node is ForwardingNode forwarding)
        {
            node = forwarding.Target;
        }

        return node;
    }

    /// <summary>Named users of this node: parent nodes, exports, jobs. A node with users cannot be deleted.</summary>
    public int UserCount => Volatile.Read(ref _users);

    private int _users;

    public void AddUser() => Interlocked.Increment(ref _users);

    public void RemoveUser() => Interlocked.Decrement(ref _users);

    /// <summary>Hooks called before every write-like request reaches the driver (dirty bitmaps, copy-before-write).</summary>
    public WriteNotifierList WriteNotifiers { get; } = new();

    /// <summary>Hooks called after a write-like request succeeded (dirty tracking that must not miss data still in flight).</summary>
    public WriteNotifierList WrittenNotifiers { get; } = new();

    protected void AttachChild(string name, ChildRole role, BlockNode node)
    {
        _children.Add(new BlockChild(name, role, node));
        node.AddUser();
    }

    protected void DetachChild(BlockChild child)
    {
        if (_children.Remove(child))
        {
            child.Node.RemoveUser();
        }
    }

    /// <summary>Replaces the node of an existing child (graph changes after a drain).</summary>
    protected void ReplaceChild(BlockChild child, BlockNode node)
    {
        var i = _children.IndexOf(child);
        if (i < 0)
        {
            throw new InvalidOperationException("not a child of this node");
        }

        node.AddUser();
        _children[i] = child with { Node = node };
        child.Node.RemoveUser();
    }

    /// <summary>Waits until every request that entered this node has completed.</summary>
    public Task DrainAsync()
    {
        lock (_children)
        {
            if (_inFlight == 0)
            {
                return Task.CompletedTask;
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task;
        }
    }

    private void Enter()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw new BlockException(Errno.ESHUTDOWN, $"Node '{NodeName}' is closed");
        }

        Interlocked.Increment(ref _inFlight);
    }

    private void Leave()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _drained) is not null)
        {
            TaskCompletionSource? done;
            lock (_children)
            {
                done = _inFlight == 0 ? _drained : null;
                if (done is not null)
                {
                    _drained = null;
                }
            }

            done?.TrySetResult();
        }
    }

    /// <summary>Drains, then closes the driver's resources. Children are closed by the graph, not here.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await DrainAsync().ConfigureAwait(false);
        await DisposeCoreAsync().ConfigureAwait(false);
        foreach (var c in _children)
        {
            c.Node.RemoveUser();
        }

        GC.SuppressFinalize(this);
    }

    protected virtual ValueTask DisposeCoreAsync() => ValueTask.CompletedTask;

    public override string ToString() => $"{DriverName}:{NodeName}";
}
