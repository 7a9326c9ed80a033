namespace ExportServer.Block.Core;

/// <summary>QEMU's BlockdevDetectZeroesOptions: what a write of nothing but zero bytes becomes.</summary>
public enum DetectZeroes
{
    /// <summary>Written as it is.</summary>
    Off,

    /// <summary>Becomes a write-zeroes request, which a driver may store without data.</summary>
    On,

    /// <summary>Becomes a write-zeroes request that may also free the space (needs discard=unmap).</summary>
    Unmap,
}
