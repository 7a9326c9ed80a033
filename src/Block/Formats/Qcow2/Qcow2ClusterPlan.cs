namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// What an allocating write does to one guest cluster: the bytes it writes [WriteStart, WriteEnd)
/// within the cluster, the bytes it stores [UnitStart, UnitEnd) (whole clusters or subclusters, the
/// rest copied from the old content), the host cluster, and the old entry to release.
/// </summary>
internal struct Qcow2ClusterPlan
{
    public long Guest;
    public int WriteStart;
    public int WriteEnd;
    public int UnitStart;
    public int UnitEnd;
    public Qcow2WriteMode Mode;
    public long Host;
    public ulong OldEntry;
    public ulong OldBitmap;
    public bool FreeOld;
    public bool FullCopy;

    /// <summary>The old content of the cluster reads as zeroes (unallocated without backing data, or zero).</summary>
    public bool ZeroSource;

    /// <summary>The new host cluster is known to hold zeroes (just added at the end of the file), as the old content does.</summary>
    public bool SkipCow;

    /// <summary>Whether only the written bytes need storing (nothing to copy from the old content).</summary>
    public readonly bool IsPureData => SkipCow || (UnitStart == WriteStart && UnitEnd == WriteEnd);
}
