using ExportServer.Block.Core;

namespace ExportServer.Block.Filters.Compress;

/// <summary>
/// QEMU's compress filter: every write goes to the child as a compressed write. Requests are aligned
/// to the child's compression unit (a qcow2 cluster), so the common path turns a partial write into a
/// whole-cluster read-modify-write; like QEMU, a cluster can only be written compressed once (the
/// child refuses to overwrite an allocated cluster). Everything else is forwarded unchanged.
/// </summary>
internal sealed class CompressNode : FilterNode
{
    /// <summary>
    /// With <paramref name="alignToCluster"/> false the child's limits are kept: for a writer (backup)
    /// that only ever writes whole clusters, the last one possibly cut short by the end of the node.
    /// </summary>
    public CompressNode(string nodeName, bool readOnly, BlockNode child, bool alignToCluster = true)
        : base(nodeName, readOnly, child)
    {
        if (alignToCluster)
        {
            Limits = child.Limits with { RequestAlignment = Math.Max(child.Limits.RequestAlignment, child.CompressedWriteSize) };
        }
    }

    public override string DriverName => "compress";

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        Child.WriteAsync(offset, buffer, flags | WriteFlags.Compressed);
}
