using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// block-dirty-bitmap-add (QEMU's qmp_block_dirty_bitmap_add and its checks, in its order): prepare
/// creates the bitmap, abort releases it again.
/// </summary>
public sealed class BitmapAddAction(BlockGraph graph, string node, string name, long? granularity, bool persistent, bool disabled) : ITransactionAction
{
    private BlockNode? _node;
    private BlockDirtyBitmap? _added;

    public ValueTask PrepareAsync()
    {
        if (name.Length == 0)
        {
            throw BlockException.Invalid("Bitmap name cannot be empty");
        }

        var bs = graph.TryFind(node) ?? throw new BlockException(Errno.ENOENT, $"Cannot find device='{node}' nor node-name='{node}'");
        if (granularity is { } g && (g < 512 || g > uint.MaxValue || (g & (g - 1)) != 0))
        {
            throw BlockException.Invalid("Granularity must be power of 2 and at least 512");
        }

        var size = granularity ?? bs.DefaultBitmapGranularity;
        if (persistent)
        {
            if (bs is not IPersistentBitmaps store)
            {
                throw BlockException.NotSupported($"Can't store persistent bitmaps to {node}: Operation not supported");
            }

            store.CheckCanStore(name, size);
        }

        var bitmap = bs.CreateDirtyBitmap(name, size);
        bitmap.Enabled = !disabled;
        bitmap.Persistent = persistent;
        (_node, _added) = (bs, bitmap);
        return ValueTask.CompletedTask;
    }

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync()
    {
        if (_added is not null)
        {
            _node!.ReleaseDirtyBitmap(_added);
        }

        return ValueTask.CompletedTask;
    }
}
