namespace ExportServer.Block.Core;

/// <summary>What one layer knows about a range; the meanings follow QEMU's BDRV_BLOCK_* bits.</summary>
[Flags]
public enum BlockStatusFlags
{
    None = 0,

    /// <summary>The range holds data (as opposed to a hole).</summary>
    Data = 1,

    /// <summary>The range reads as zeroes.</summary>
    Zero = 2,

    /// <summary>This layer decides the content; when clear, the content comes from the backing node.</summary>
    Allocated = 4,
}
