namespace ExportServer.Block.Formats.Qcow2;

/// <summary>What one guest (sub)cluster maps to in this layer.</summary>
internal enum Qcow2ClusterKind
{
    /// <summary>Not in this layer: the backing node (or zeroes) shows through.</summary>
    Unallocated,

    /// <summary>Reads as zeroes (v3 zero flag, or an extended-L2 zero subcluster).</summary>
    Zero,

    /// <summary>Stored uncompressed at a host offset.</summary>
    Normal,

    /// <summary>Stored compressed; the whole cluster must be inflated.</summary>
    Compressed,
}
