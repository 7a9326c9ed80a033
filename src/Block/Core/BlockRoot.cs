namespace ExportServer.Block.Core;

/// <summary>
/// What an export or job holds instead of a node (QEMU's BlockBackend): a nameless forwarder to
/// one node of the graph that can be pointed at another node after a drain, so that an export
/// follows graph changes such as a snapshot putting an overlay on top of the exported node.
/// It is not entered in the graph; it counts as one user of its current node.
/// </summary>
public sealed class BlockRoot : ForwardingNode
{
    private BlockChild _child;

    public BlockRoot(BlockNode node)
        : base(node.NodeName, node.IsReadOnly)
    {
        AttachChild("root", ChildRole.Other, node);
        _child = Children[0];
        Sync();
    }

    /// <summary>The node the root forwards to.</summary>
    public BlockNode Node => _child.Node;

    public override BlockNode Target => _child.Node;

    public override string DriverName => Node.DriverName;

    public override string FileName => Node.FileName;

    public override bool DiscardUnmap { get => Node.DiscardUnmap; set => Node.DiscardUnmap = value; }

    /// <summary>Takes over the node's size, mode and limits (after a resize or a reopen).</summary>
    public void Sync()
    {
        IsReadOnly = Node.IsReadOnly;
        Limits = Node.Limits;
    }

    /// <summary>Points the root at <paramref name="node"/> once the requests in flight have finished.</summary>
    public async ValueTask SwapAsync(BlockNode node)
    {
        await DrainAsync().ConfigureAwait(false);
        ReplaceChild(_child, node);
        _child = Children[0];
        Sync();
    }
}
