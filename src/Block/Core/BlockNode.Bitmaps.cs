using ExportServer.Block.Bitmaps;

namespace ExportServer.Block.Core;

/// <summary>
/// The node's named dirty bitmaps. Every write, write-zeroes and discard that reaches the node marks
/// the enabled ones (after the request, whether it succeeded or not, as QEMU's
/// bdrv_co_write_req_finish); a node without bitmaps pays one array-length test per request.
/// </summary>
public abstract partial class BlockNode
{
    /// <summary>Newest first, as QEMU lists them; immutable, replaced whole under <see cref="_gate"/>.</summary>
    private BlockDirtyBitmap[] _bitmaps = [];

    public IReadOnlyList<BlockDirtyBitmap> DirtyBitmaps => Volatile.Read(ref _bitmaps);

    /// <summary>
    /// Bitmaps a job or filter keeps over this node for itself (a backup's copy bitmap), newest first:
    /// not recorded into by writes and not found by name, only shown by queries, as QEMU lists its
    /// anonymous bitmaps.
    /// </summary>
    private DirtyBitmap[] _anonymous = [];

    public IReadOnlyList<DirtyBitmap> AnonymousBitmaps => Volatile.Read(ref _anonymous);

    /// <summary>Lists <paramref name="bits"/> among the node's anonymous bitmaps until the returned handle is disposed.</summary>
    public IDisposable ShowAnonymousBitmap(DirtyBitmap bits)
    {
        lock (_gate)
        {
            Volatile.Write(ref _anonymous, [bits, .. _anonymous]);
        }

        return new AnonymousBitmapHandle(this, bits);
    }

    private sealed class AnonymousBitmapHandle(BlockNode node, DirtyBitmap bits) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                lock (node._gate)
                {
                    Volatile.Write(ref node._anonymous, Array.FindAll(node._anonymous, b => !ReferenceEquals(b, bits)));
                }
            }
        }
    }

    public BlockDirtyBitmap? FindDirtyBitmap(string name) => Array.Find(Volatile.Read(ref _bitmaps), b => b.Name == name);

    /// <summary>QEMU's bdrv_get_default_bitmap_granularity: the cluster size within [4 KiB, 64 KiB], else 64 KiB.</summary>
    public long DefaultBitmapGranularity =>
        ImageInfoQuery.DriverInfo(this) is { ClusterSize: > 0 } info ? Math.Clamp(info.ClusterSize, 4096, 65536) : 65536;

    /// <summary>Adds an enabled, empty bitmap over the node's length (QEMU's bdrv_create_dirty_bitmap and its errors).</summary>
    public BlockDirtyBitmap CreateDirtyBitmap(string name, long granularity)
    {
        if (name.Length > BlockDirtyBitmap.MaxNameLength)
        {
            throw BlockException.Invalid($"Bitmap name too long: {name}");
        }

        lock (_gate)
        {
            if (Array.Exists(_bitmaps, b => b.Name == name))
            {
                throw BlockException.Invalid($"Bitmap already exists: {name}");
            }

            var bitmap = new BlockDirtyBitmap(name, Length, granularity);
            Volatile.Write(ref _bitmaps, [bitmap, .. _bitmaps]);
            return bitmap;
        }
    }

    public void ReleaseDirtyBitmap(BlockDirtyBitmap bitmap)
    {
        lock (_gate)
        {
            Volatile.Write(ref _bitmaps, Array.FindAll(_bitmaps, b => !ReferenceEquals(b, bitmap)));
        }
    }

    private void MarkDirty(long offset, long length)
    {
        foreach (var b in Volatile.Read(ref _bitmaps))
        {
            b.Record(offset, length);
        }
    }

    private void ResizeDirtyBitmaps()
    {
        foreach (var b in Volatile.Read(ref _bitmaps))
        {
            b.Resize(Length);
        }
    }
}
