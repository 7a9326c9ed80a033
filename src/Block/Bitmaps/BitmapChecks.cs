namespace ExportServer.Block.Bitmaps;

/// <summary>What a use of a bitmap requires of it (QEMU's BDRV_BITMAP_* check flags).</summary>
[Flags]
public enum BitmapChecks
{
    None = 0,

    /// <summary>Not held by an export or a job.</summary>
    Busy = 1,

    /// <summary>Not loaded from an image opened read-only.</summary>
    ReadOnly = 2,

    /// <summary>Not left in use by a program that stopped without storing it.</summary>
    Inconsistent = 4,

    /// <summary>Changing a bitmap's bits (clear, merge into).</summary>
    Default = Busy | ReadOnly | Inconsistent,

    /// <summary>Reading a bitmap or switching its recording.</summary>
    AllowReadOnly = Busy | Inconsistent,
}
