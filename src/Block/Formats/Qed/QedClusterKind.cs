namespace ExportServer.Block.Formats.Qed;

/// <summary>The state of a guest cluster in a QED image.</summary>
internal enum QedClusterKind
{
    /// <summary>Never written: the backing file's data, or zeroes without one.</summary>
    Unallocated,

    /// <summary>Reads as zeroes whatever lies below.</summary>
    Zero,

    /// <summary>Stored in a cluster of the image file.</summary>
    Data,
}
