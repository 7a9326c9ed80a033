namespace ExportServer.Block.Core;

/// <summary>
/// QEMU's generic rules around <see cref="IImageInfoSource"/>: filters answer for the node they
/// filter; a format's allocated size is the sum of its data children's (backing excluded); a leaf
/// that knows none has none.
/// </summary>
public static class ImageInfoQuery
{
    public static BlockDriverInfo? DriverInfo(BlockNode node) => node switch
    {
        IImageInfoSource s => s.DriverInfo,
        ForwardingNode f => DriverInfo(f.Target),
        _ => null,
    };

    public static FormatSpecificInfo? SpecificInfo(BlockNode node) => (node as IImageInfoSource)?.SpecificInfo;

    public static BackingFileName? BackingFile(BlockNode node) => (node as IImageInfoSource)?.BackingFile;

    public static long? AllocatedSize(BlockNode node)
    {
        if (node is IImageInfoSource { AllocatedSize: { } own })
        {
            return own;
        }

        if (node is ForwardingNode f)
        {
            return AllocatedSize(f.Target);
        }

        var children = node.Children.Where(c => c.Role != ChildRole.Backing).ToList();
        if (children.Count == 0)
        {
            return null;
        }

        long sum = 0;
        foreach (var child in children)
        {
            if (AllocatedSize(child.Node) is not { } size)
            {
                return null;
            }

            sum += size;
        }

        return sum;
    }
}
