namespace ExportServer.Block.Core;

/// <summary>
/// An edge of the graph from <paramref name="Parent"/> to <paramref name="Node"/>: <paramref name="Name"/>
/// is QEMU's child name ("file", "backing", "data-file"). Edges are immutable; a graph change
/// publishes a new set of them.
/// </summary>
public sealed record BlockChild(string Name, ChildRole Role, BlockNode Node, BlockNode Parent)
{
    /// <summary>What the parent does with the child, for permissions; a backing child is <see cref="ChildUse.Cow"/>.</summary>
    public ChildUse Use { get; init; } = Role == ChildRole.Backing ? ChildUse.Cow : ChildUse.Filtered;

    /// <summary>When the edge was made, among edges and handles: QEMU checks the newest user first.</summary>
    public long Stamp { get; init; } = BlockNode.NextUseStamp();
}
