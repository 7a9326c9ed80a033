namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// A run of guest bytes starting at the queried offset with one kind of mapping. For
/// <see cref="Qcow2ClusterKind.Normal"/> the run is contiguous on the host from <see cref="HostOffset"/>
/// (the byte that holds the queried guest offset) and <see cref="Copied"/> says whether every cluster
/// of the run has refcount 1 (may be written in place); for compressed clusters <see cref="Entry"/> is the L2 entry.
/// </summary>
internal readonly record struct Qcow2Mapping(Qcow2ClusterKind Kind, long Length, long HostOffset, ulong Entry, bool Copied = false);
