using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// block-dirty-bitmap-merge (QEMU's block_dirty_bitmap_merge): every source is looked up and
/// checked before the target changes, so a bad source leaves it as it was; abort restores it.
/// </summary>
public sealed class BitmapMergeAction(BlockGraph graph, string node, string target, IReadOnlyList<BitmapSource> sources) : ITransactionAction
{
    private BlockDirtyBitmap? _target;
    private DirtyBitmap? _before;

    public ValueTask PrepareAsync()
    {
        var (bs, dst) = BitmapLookup.Find(graph, node, target);
        var merged = new DirtyBitmap(dst.Bits.Length, dst.Granularity);
        foreach (var source in sources)
        {
            var src = source.Node is null
                ? bs.FindDirtyBitmap(source.Name) ?? throw new BlockException(Errno.ENOENT, $"Dirty bitmap '{source.Name}' not found")
                : BitmapLookup.Find(graph, source.Node, source.Name).Bitmap;
            src.Check(BitmapChecks.AllowReadOnly);
            if (src.Bits.Length != merged.Length)
            {
                throw BlockException.Invalid(
                    $"Bitmaps are of different sizes (destination size is {merged.Length}, source size is {src.Bits.Length}) and can't be merged");
            }

            merged.Merge(src.Bits);
        }

        dst.Check(BitmapChecks.Default);
        _before = dst.Bits.Resized(dst.Bits.Length);
        _target = dst;
        dst.Bits.Merge(merged);
        return ValueTask.CompletedTask;
    }

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync()
    {
        if (_target is not null)
        {
            _target.Bits.Clear();
            _target.Bits.Merge(_before!);
        }

        return ValueTask.CompletedTask;
    }
}
