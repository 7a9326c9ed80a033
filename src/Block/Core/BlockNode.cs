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
    /// <summary>Edges to children and from parents: immutable arrays, replaced whole under <see cref="_gate"/>, read without a lock.</summary>
    private BlockChild[] _children = [];
    private BlockChild[] _parents = [];
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

    /// <summary>The node's cache options as it was opened with them (inherited from a parent's where not given).</summary>
    public CacheOptions Cache { get; internal set; }

    public BlockLimits Limits { get; protected set; } = BlockLimits.Default;

    public BlockStats Stats { get; } = new();

    /// <summary>The file name shown in query-named-block-nodes (the image, or a description).</summary>
    public virtual string FileName => FileChild?.Node.FileName ?? string.Empty;

    /// <summary>
    /// Whether requests to this node reach storage over a network (rbd, gluster, nbd, ssh, http) rather
    /// than a local file: each then waits a round trip, so keeping the storage busy takes many more bytes
    /// in flight. A node above such storage (a format, a filter, a backing chain) is remote through its
    /// children.
    /// </summary>
    public virtual bool IsRemote
    {
        get
        {
            foreach (var child in Children)
            {
                if (child.Node.IsRemote)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// How many requests of one client connection are worth handing to this node at once, or 0 when
    /// the node sets no such limit. Some storage libraries queue whatever they are given and get
    /// slower the deeper one client's queue grows (see the rbd driver). A node above such storage (a
    /// format, a filter, a backing chain) takes the smallest limit of its children.
    /// </summary>
    public virtual int RequestsWorthQueuing
    {
        get
        {
            var least = 0;
            foreach (var child in Children)
            {
                var n = child.Node.RequestsWorthQueuing;
                if (n > 0 && (least == 0 || n < least))
                {
                    least = n;
                }
            }

            return least;
        }
    }

    /// <summary>What the driver can do beyond reading and writing; set when it opens, as <see cref="Limits"/>.</summary>
    public BlockCapabilities Capabilities { get; protected set; } = BlockCapabilities.None;

    protected bool SupportsFua => Capabilities.Fua;

    protected bool SupportsWriteZeroes => Capabilities.WriteZeroes;

    public bool CanFastZero => Capabilities.FastZero;

    /// <inheritdoc cref="BlockCapabilities.CompressedWriteSize"/>
    public int CompressedWriteSize => Capabilities.CompressedWriteSize;

    public bool CanTruncate => Capabilities.Truncate;

    /// <summary>The node's option 'discard': unmap lets discards free space, ignore drops them.</summary>
    public bool DiscardUnmap { get; set; }

    public IReadOnlyList<BlockChild> Children => Volatile.Read(ref _children);

    /// <summary>The edges from the nodes that have this node as a child.</summary>
    public IReadOnlyList<BlockChild> ParentEdges => Volatile.Read(ref _parents);

    /// <summary>
    /// Whether a user writes through this node, which keeps it from being made read-only (QEMU's
    /// WRITE or WRITE_UNCHANGED permission): a held <see cref="BlockNodeUser"/> that needs it (a
    /// job's target), a writable export's root, or a writable parent that writes to it as its file
    /// or filtered child (a backing child is only read). Parents listed in
    /// <paramref name="changing"/> are being made read-only with it and do not count.
    /// </summary>
    public bool HasWriteUser(IReadOnlyCollection<BlockNode> changing)
    {
        if (HasWritingHandle())
        {
            return true;
        }

        foreach (var edge in ParentEdges)
        {
            var parent = edge.Parent;
            if (changing.Contains(parent))
            {
                continue;
            }

            if (parent is BlockRoot root ? root.HasWritingHandle() : edge.Role != ChildRole.Backing && !parent.IsReadOnly)
            {
                return true;
            }
        }

        return false;
    }

    private bool HasWritingHandle() =>
        Array.Exists(Volatile.Read(ref _users), u => (u.Needs & (BlockPermissions.Write | BlockPermissions.WriteUnchanged)) != 0);

    public BlockChild? FileChild => FindChild(ChildRole.File);

    public BlockChild? BackingChild => FindChild(ChildRole.Backing);

    private BlockChild? FindChild(ChildRole role)
    {
        foreach (var c in Volatile.Read(ref _children))
        {
            if (c.Role == role)
            {
                return c;
            }
        }

        return null;
    }

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

    /// <summary>Users of this node: parent nodes (<see cref="ParentEdges"/>) and <see cref="Users"/>. A node with users cannot be deleted.</summary>
    public int UserCount => Volatile.Read(ref _parents).Length + Volatile.Read(ref _users).Length;

    /// <summary>The exports and jobs that hold this node, replaced whole under <see cref="_gate"/>.</summary>
    public IReadOnlyList<BlockNodeUser> Users => Volatile.Read(ref _users);

    private BlockNodeUser[] _users = [];

    /// <summary>
    /// Makes <paramref name="holder"/> a user of this node until it disposes the handle. Refused
    /// (EPERM, QEMU's "Permission conflict on node …") when it needs what another user of this node
    /// or of a node below does not share, or does not share what another needs. Exports and jobs
    /// check the node's mode against what they need themselves, with their own messages.
    /// </summary>
    /// <param name="sharesFirst">
    /// What the handle shares while it is first attached, when that differs: QEMU's exports attach
    /// sharing everything and narrow it afterwards, so a conflict over what they need is found
    /// before one over what they keep from others.
    /// </param>
    public BlockNodeUser TakeUser(string holder, BlockPermissions needs, BlockPermissions shares = BlockPermissions.All, BlockPermissions? sharesFirst = null)
    {
        if (sharesFirst is { } first && first != shares)
        {
            TakeUser(holder, needs, first).Dispose();
        }

        var user = new BlockNodeUser(this, holder, needs, shares);
        var before = PermissionConflicts();
        lock (_gate)
        {
            Volatile.Write(ref _users, [.. _users, user]);
        }

        var conflict = PermissionConflicts().FirstOrDefault(c => !before.Contains(c));
        if (conflict is not null)
        {
            Release(user);
            throw new BlockException(Errno.EPERM, conflict);
        }

        return user;
    }

    internal void Release(BlockNodeUser user)
    {
        lock (_gate)
        {
            Volatile.Write(ref _users, Array.FindAll(_users, u => !ReferenceEquals(u, user)));
        }
    }

    /// <summary>Hooks called before every write-like request reaches the driver (dirty bitmaps, copy-before-write).</summary>
    public WriteNotifierList WriteNotifiers { get; } = new();

    /// <summary>Hooks called after a write-like request succeeded (dirty tracking that must not miss data still in flight).</summary>
    public WriteNotifierList WrittenNotifiers { get; } = new();

    protected void AttachChild(string name, ChildRole role, BlockNode node, ChildUse? use = null)
    {
        var edge = new BlockChild(name, role, node, this);
        if (use is { } u)
        {
            edge = edge with { Use = u };
        }

        node.AddParent(edge);
        lock (_gate)
        {
            Volatile.Write(ref _children, [.. _children, edge]);
        }
    }

    protected void DetachChild(BlockChild child)
    {
        bool removed;
        lock (_gate)
        {
            var rest = Array.FindAll(_children, c => !ReferenceEquals(c, child));
            removed = rest.Length != _children.Length;
            Volatile.Write(ref _children, rest);
        }

        if (removed)
        {
            child.Node.RemoveParent(child);
        }
    }

    /// <summary>
    /// Replaces the node of an existing child in one step: a request sees the old edge or the new
    /// one, never none. Callers hold a drained section on this node.
    /// </summary>
    protected void ReplaceChild(BlockChild child, BlockNode node)
    {
        var edge = child with { Node = node, Stamp = NextUseStamp() };
        node.AddParent(edge);
        lock (_gate)
        {
            var i = Array.IndexOf(_children, child);
            if (i < 0)
            {
                node.RemoveParent(edge);
                throw new InvalidOperationException("not a child of this node");
            }

            var next = (BlockChild[])_children.Clone();
            next[i] = edge;
            Volatile.Write(ref _children, next);
        }

        child.Node.RemoveParent(child);
    }

    private void AddParent(BlockChild edge)
    {
        lock (_gate)
        {
            Volatile.Write(ref _parents, [.. _parents, edge]);
        }
    }

    private void RemoveParent(BlockChild edge)
    {
        lock (_gate)
        {
            Volatile.Write(ref _parents, Array.FindAll(_parents, p => !ReferenceEquals(p, edge)));
        }
    }

    /// <summary>Fails new requests, drains, then closes the driver's resources. Children are closed by the graph, not here.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await CloseGateAsync().ConfigureAwait(false);
        await DisposeCoreAsync().ConfigureAwait(false);
        foreach (var c in Volatile.Read(ref _children))
        {
            c.Node.RemoveParent(c);
        }

        GC.SuppressFinalize(this);
    }

    protected virtual ValueTask DisposeCoreAsync() => ValueTask.CompletedTask;

    public override string ToString() => $"{DriverName}:{NodeName}";
}
