using ExportServer.Block.Bitmaps;

namespace ExportServer.Block.Jobs.Backup;

/// <summary>
/// The bitmap a backup reads (sync=bitmap) and updates by <see cref="Mode"/> (QEMU's sync bitmap):
/// frozen from the moment the backup is prepared, so it is busy and writes go to its successor,
/// and settled exactly once when the backup ends or is never started.
/// </summary>
public sealed class BackupBitmap(BlockDirtyBitmap bitmap, BitmapSyncMode mode)
{
    private int _settled;

    public BlockDirtyBitmap Bitmap => bitmap;

    public BitmapSyncMode Mode => mode;

    public void Freeze() => bitmap.Freeze();

    /// <summary>
    /// QEMU's backup_cleanup_sync_bitmap: on success (or always) the successor replaces the bits,
    /// else the successor is merged back; a failed job with mode always also marks what it left
    /// <paramref name="uncopied"/>.
    /// </summary>
    public void Settle(bool succeeded, DirtyBitmap? uncopied)
    {
        if (Interlocked.Exchange(ref _settled, 1) != 0)
        {
            return;
        }

        if ((succeeded || mode == BitmapSyncMode.Always) && mode != BitmapSyncMode.Never)
        {
            bitmap.Abdicate();
        }
        else
        {
            bitmap.Reclaim();
        }

        if (!succeeded && mode == BitmapSyncMode.Always && uncopied is not null)
        {
            bitmap.Bits.Merge(uncopied);
        }
    }

    /// <summary>A backup that never started (its transaction failed) leaves the bitmap as it was.</summary>
    public void Restore()
    {
        if (Interlocked.Exchange(ref _settled, 1) == 0)
        {
            bitmap.Reclaim();
        }
    }
}
