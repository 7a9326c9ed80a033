namespace ExportServer.Block.Core;

/// <summary>
/// A graph change in progress (QEMU's bdrv_drained_begin/end): from the moment it began, new requests
/// to the node and to every node above it are held, and every request that had entered them has
/// completed. Disposing it ends the section; held requests then go on, in the order they arrived.
/// Sections nest and are counted: a node is released when its last section ends.
/// </summary>
public sealed class DrainedSection : IDisposable
{
    private BlockNode[]? _nodes;

    /// <param name="nodes">The quiesced nodes, parents before children.</param>
    internal DrainedSection(BlockNode[] nodes) => _nodes = nodes;

    public void Dispose()
    {
        var nodes = Interlocked.Exchange(ref _nodes, null);
        if (nodes is null)
        {
            return;
        }

        // Children first, so that what a released parent request sends down finds its child open.
        for (var i = nodes.Length - 1; i >= 0; i--)
        {
            nodes[i].Unquiesce();
        }
    }
}
