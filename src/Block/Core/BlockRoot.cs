namespace ExportServer.Block.Core;

/// <summary>
/// What an export or job holds instead of a node (QEMU's BlockBackend): a nameless forwarder to
/// one node of the graph that can be pointed at another node in a drained section, so that an
/// export follows graph changes such as a snapshot putting an overlay on top of the exported node.
/// It is not entered in the graph; it is a parent of its current node. A drained section on that
/// node or below holds the export's new requests here.
/// </summary>
public sealed class BlockRoot : ForwardingNode, IFileExtentSource
{
    private readonly object _swap = new();

    public BlockRoot(BlockNode node)
        : base(node.NodeName, node.IsReadOnly, node)
    {
        AttachChild("root", ChildRole.Other, node);
        Sync();
    }

    /// <summary>The node the root forwards to.</summary>
    public BlockNode Node => Children[0].Node;

    public override BlockNode Target => Children[0].Node;

    public override string DriverName => Node.DriverName;

    public override string FileName => Node.FileName;

    /// <summary>
    /// Write-through (QEMU's BlockBackend with its write cache disabled, an export's writethrough=on):
    /// every write and write-zeroes goes down with FUA, so it is on stable storage when it completes.
    /// </summary>
    public bool WriteThrough { get; init; }

    /// <summary>Takes over the node's mode, limits, capabilities and discard option (after a resize, a reopen or a swap).</summary>
    public void Sync()
    {
        IsReadOnly = Node.IsReadOnly;
        Limits = Node.Limits;
        Capabilities = Forwarded(Node.Capabilities);
        DiscardUnmap = Node.DiscardUnmap;
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        Target.WriteAsync(offset, buffer, WriteThrough ? flags | WriteFlags.Fua : flags);

    /// <summary>The root reads as its node does: the node's file extent, if it has one.</summary>
    bool IFileExtentSource.TryLeaseExtent(long offset, int length, out FileExtent extent) =>
        Target.TryLeaseFileExtent(offset, length, out extent);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        Target.WriteZeroesAsync(offset, length, WriteThrough ? flags | ZeroFlags.Fua : flags);

    /// <summary>
    /// Points the root at <paramref name="node"/>. From the start of the call, new requests are
    /// held; once the requests already forwarded to the old node have finished, the node is
    /// replaced and the held requests go on to the new node, in the order they arrived.
    /// </summary>
    public async ValueTask SwapAsync(BlockNode node)
    {
        using (await BeginDrainedSectionAsync().ConfigureAwait(false))
        {
            // Sections nest, so two swaps can be drained at once: each replaces whatever edge is current.
            lock (_swap)
            {
                ReplaceChild(Children[0], node);
                Sync();
            }
        }
    }
}
