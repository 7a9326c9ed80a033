using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// block-dirty-bitmap-remove: prepare checks the bitmap, removes a persistent one from the image
/// and holds it busy; commit releases it; abort lets it be used again (a persistent one is stored
/// again when the image closes), as QEMU's block_dirty_bitmap_remove action.
/// </summary>
public sealed class BitmapRemoveAction(BlockGraph graph, string node, string name) : ITransactionAction
{
    private BlockNode? _node;
    private BlockDirtyBitmap? _bitmap;

    public async ValueTask PrepareAsync()
    {
        var (bs, bitmap) = BitmapLookup.Find(graph, node, name);
        bitmap.Check(BitmapChecks.Busy | BitmapChecks.ReadOnly);
        if (bitmap.Persistent && bs is IPersistentBitmaps store)
        {
            await store.RemoveStoredAsync(name).ConfigureAwait(false);
        }

        bitmap.Busy = true;
        (_node, _bitmap) = (bs, bitmap);
    }

    public ValueTask CommitAsync()
    {
        _bitmap!.Busy = false;
        _bitmap.Persistent = false;
        _node!.ReleaseDirtyBitmap(_bitmap);
        return ValueTask.CompletedTask;
    }

    public ValueTask AbortAsync()
    {
        if (_bitmap is not null)
        {
            _bitmap.Busy = false;
        }

        return ValueTask.CompletedTask;
    }
}
