using ExportServer.Block.Core;

namespace ExportServer.Block.Filters;

/// <summary>
/// A filter: a <see cref="ForwardingNode"/> over its 'file' child that overrides only what it changes.
/// Limits are the child's at open.
/// </summary>
internal abstract class FilterNode : ForwardingNode
{
    protected FilterNode(string nodeName, bool readOnly, BlockNode child)
        : base(nodeName, readOnly, child)
    {
        Child = child;
        Limits = child.Limits;
        AttachChild("file", ChildRole.File, child);
    }

    /// <summary>The filtered node.</summary>
    protected BlockNode Child { get; }

    public override BlockNode Target => Child;
}
