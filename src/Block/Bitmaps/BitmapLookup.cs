using ExportServer.Block.Core;

namespace ExportServer.Block.Bitmaps;

/// <summary>QEMU's block_dirty_bitmap_lookup: a bitmap by node and name, with QEMU's errors.</summary>
public static class BitmapLookup
{
    public static (BlockNode Node, BlockDirtyBitmap Bitmap) Find(BlockGraph graph, string node, string name)
    {
        var bs = graph.TryFind(node) ?? throw new BlockException(Errno.ENOENT, $"Node '{node}' not found");
        var bitmap = bs.FindDirtyBitmap(name) ?? throw new BlockException(Errno.ENOENT, $"Dirty bitmap '{name}' not found");
        return (bs, bitmap);
    }
}
