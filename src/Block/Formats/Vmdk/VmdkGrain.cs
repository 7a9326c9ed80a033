namespace ExportServer.Block.Formats.Vmdk;

/// <summary>How a grain table maps a piece of an extent.</summary>
internal enum VmdkGrainKind
{
    /// <summary>Not in this layer: the parent's data, or zeroes without one.</summary>
    Unallocated,

    /// <summary>Reads as zeroes in this layer (a zeroed grain, or seSparse's zero and unmapped grains).</summary>
    Zero,

    /// <summary>Stored at <see cref="VmdkGrain.HostOffset"/> in the extent's file (flat extents: always).</summary>
    Data,

    /// <summary>A deflated grain (with a marker in stream-optimized extents) at <see cref="VmdkGrain.HostOffset"/>.</summary>
    Compressed,
}

/// <summary>
/// The mapping of the first <see cref="Length"/> bytes of a range inside one grain: for data the
/// file offset of its first byte, for a compressed grain the offset of the grain's marker.
/// </summary>
internal readonly record struct VmdkGrain(VmdkGrainKind Kind, long Length, long HostOffset = 0);
