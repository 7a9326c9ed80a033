using ExportServer.Block.Core;

namespace ExportServer.Block.Bitmaps;

/// <summary>
/// A named dirty bitmap of a node (QEMU's BdrvDirtyBitmap): the bits, whether it records writes,
/// whether the node's image keeps it (persistent), and the states that keep QMP from using it: busy
/// (an export or a job holds it), read-only (loaded from an image opened read-only), inconsistent
/// (found in use in an image, so its bits cannot be trusted).
/// </summary>
public sealed class BlockDirtyBitmap
{
    /// <summary>QEMU's BDRV_BITMAP_MAX_NAME_SIZE.</summary>
    public const int MaxNameLength = 1023;

    /// <summary>
    /// Held by every write's record and by the freeze, reclaim and abdicate that swap the bits a write
    /// goes to (QEMU's dirty_bitmap_mutex): a write never marks bits that are being dropped.
    /// </summary>
    private readonly Lock _swap = new();

    private DirtyBitmap _bits;
    private DirtyBitmap? _successor;
    private volatile bool _enabled = true;

    internal BlockDirtyBitmap(string name, long length, long granularity)
    {
        Name = name;
        _bits = new DirtyBitmap(length, granularity);
    }

    public string Name { get; }

    public DirtyBitmap Bits => Volatile.Read(ref _bits);

    public long Granularity => Bits.Granularity;

    /// <summary>Whether writes to the node mark it (QEMU's recording).</summary>
    public bool Enabled { get => _enabled; set => _enabled = value; }

    public bool Persistent { get; set; }

    public bool Busy { get; set; }

    public bool ReadOnly { get; set; }

    public bool Inconsistent { get; private set; }

    /// <summary>QEMU's count: dirty granules times the granularity.</summary>
    public long Count => Bits.DirtyGranules * Granularity;

    /// <summary>Whether a job froze the bits (<see cref="Freeze"/>); writes meanwhile go to a successor.</summary>
    public bool Frozen => Volatile.Read(ref _successor) is not null;

    /// <summary>
    /// Records a write: into the bits, or while frozen into the successor. A disabled bitmap records
    /// nothing, as does its successor (QEMU's successor inherits the parent's recording).
    /// </summary>
    public void Record(long offset, long length)
    {
        if (_enabled)
        {
            lock (_swap)
            {
                (_successor ?? _bits).Set(offset, length);
            }
        }
    }

    /// <summary>
    /// QEMU's bdrv_dirty_bitmap_create_successor: the bits stand still (a backup reads them) and the
    /// bitmap is busy, while writes from now on are recorded in a new, empty successor.
    /// </summary>
    public void Freeze()
    {
        Check(BitmapChecks.Busy);
        lock (_swap)
        {
            _successor = new DirtyBitmap(_bits.Length, _bits.Granularity);
        }

        Busy = true;
    }

    /// <summary>QEMU's bdrv_dirty_bitmap_abdicate: the successor replaces the frozen bits (what the job read is dropped).</summary>
    public void Abdicate()
    {
        lock (_swap)
        {
            _bits = _successor ?? throw new InvalidOperationException($"bitmap '{Name}' is not frozen");
            _successor = null;
        }

        Busy = false;
    }

    /// <summary>QEMU's bdrv_reclaim_dirty_bitmap: the successor's bits are merged back into the frozen ones.</summary>
    public void Reclaim()
    {
        lock (_swap)
        {
            var successor = _successor ?? throw new InvalidOperationException($"bitmap '{Name}' is not frozen");
            _bits.Merge(successor);
            _successor = null;
        }

        Busy = false;
    }

    /// <summary>Marks the bitmap unusable until it is removed; it no longer records.</summary>
    public void SetInconsistent()
    {
        Inconsistent = true;
        _enabled = false;
    }

    /// <summary>Throws QEMU's error when the bitmap is in a state <paramref name="checks"/> excludes.</summary>
    public void Check(BitmapChecks checks)
    {
        if ((checks & BitmapChecks.Busy) != 0 && Busy)
        {
            throw BlockException.Invalid($"Bitmap '{Name}' is currently in use by another operation and cannot be used");
        }

        if ((checks & BitmapChecks.ReadOnly) != 0 && ReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Bitmap '{Name}' is readonly and cannot be modified");
        }

        if ((checks & BitmapChecks.Inconsistent) != 0 && Inconsistent)
        {
            throw new BlockException(Errno.EINVAL, $"Bitmap '{Name}' is inconsistent and cannot be used",
                hint: "Try block-dirty-bitmap-remove to delete this bitmap from disk");
        }
    }

    /// <summary>Follows a resize of the node: the bits past the new end are dropped, new granules are clean.</summary>
    internal void Resize(long length)
    {
        lock (_swap)
        {
            _bits = _bits.Resized(length);
            _successor = _successor?.Resized(length);
        }
    }
}
