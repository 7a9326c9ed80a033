using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// block-dirty-bitmap-clear, -enable and -disable: prepare checks the bitmap as QEMU does (clear
/// needs a writable one) and changes it, keeping what abort puts back.
/// </summary>
public sealed class BitmapChangeAction(BlockGraph graph, string node, string name, BitmapChange change) : ITransactionAction
{
    private BlockDirtyBitmap? _bitmap;
    private DirtyBitmap? _bitsBefore;
    private bool _enabledBefore;

    public ValueTask PrepareAsync()
    {
        var (_, bitmap) = BitmapLookup.Find(graph, node, name);
        bitmap.Check(change == BitmapChange.Clear ? BitmapChecks.Default : BitmapChecks.AllowReadOnly);
        _bitmap = bitmap;
        _enabledBefore = bitmap.Enabled;
        switch (change)
        {
            case BitmapChange.Clear:
                _bitsBefore = bitmap.Bits.Resized(bitmap.Bits.Length);
                bitmap.Bits.Clear();
                break;
            case BitmapChange.Enable:
                bitmap.Enabled = true;
                break;
            case BitmapChange.Disable:
                bitmap.Enabled = false;
                break;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync()
    {
        if (_bitmap is not null)
        {
            _bitmap.Enabled = _enabledBefore;
            if (_bitsBefore is not null)
            {
                _bitmap.Bits.Merge(_bitsBefore);
            }
        }

        return ValueTask.CompletedTask;
    }
}
