namespace ExportServer.Block.Core;

/// <summary>
/// A use of a node by something that is not a node — an export, a job — taken with
/// <see cref="BlockNode.TakeUser"/> and disposed when done (QEMU's permissions of a BdrvChild whose
/// parent is a BlockBackend or a job). While it is held the node is not closed, and what it
/// <see cref="Needs"/> is not taken away: a node with a writing user is not made read-only.
/// </summary>
public sealed class BlockNodeUser : IDisposable
{
    private int _released;

    internal BlockNodeUser(BlockNode node, string holder, BlockPermissions needs, BlockPermissions shares)
    {
        Node = node;
        Holder = holder;
        Needs = needs;
        Shares = shares;
        Stamp = BlockNode.NextUseStamp();
    }

    /// <summary>When the handle was taken, among edges and handles: QEMU checks the newest user first.</summary>
    public long Stamp { get; }

    public BlockNode Node { get; }

    /// <summary>Who holds it, for messages ("NBD export 'x'", "mirror job").</summary>
    public string Holder { get; }

    public BlockPermissions Needs { get; }

    /// <summary>What the holder lets other users do at the same time.</summary>
    public BlockPermissions Shares { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            Node.Release(this);
        }
    }

    public override string ToString() => $"{Holder} on '{Node.NodeName}'";
}
