namespace ExportServer.Block.Formats.Qcow2;

/// <summary>How a write reaches one guest cluster.</summary>
internal enum Qcow2WriteMode
{
    /// <summary>The cluster is ours (refcount 1) and the touched part is plain data: write in place, no metadata change.</summary>
    Direct,

    /// <summary>The host cluster is ours but the touched units change state (zero → data, subcluster allocation).</summary>
    Reuse,

    /// <summary>A new host cluster is allocated (unallocated, zero, compressed or shared with a snapshot).</summary>
    New,
}
