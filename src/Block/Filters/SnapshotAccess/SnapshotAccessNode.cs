using ExportServer.Block.Core;

namespace ExportServer.Block.Filters.SnapshotAccess;

/// <summary>
/// QEMU's snapshot-access: a read-only view of the point in time its 'file' child keeps (a
/// copy-before-write filter), which an export can serve. Reads and block status come from the
/// child's snapshot; a discard gives the range up, so the filter stops keeping it; writes are not
/// supported. Over a node without a snapshot every request fails with ENOTSUP, as in QEMU.
/// </summary>
internal sealed class SnapshotAccessNode : BlockNode
{
    private readonly BlockNode _file;

    public SnapshotAccessNode(string nodeName, bool readOnly, BlockNode file)
        : base(nodeName, readOnly)
    {
        _file = file;
        Limits = file.Limits;
        Capabilities = BlockCapabilities.None;
        // It only reads the child through its snapshot, never the child's current data.
        AttachChild("file", ChildRole.File, file, ChildUse.Cow);
    }

    public override string DriverName => "snapshot-access";

    public override long Length => _file.Length;

    private ISnapshotAccess Snapshot =>
        _file as ISnapshotAccess ?? throw BlockException.NotSupported("Operation not supported");

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) => Snapshot.ReadSnapshotAsync(offset, buffer);

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        Snapshot.GetSnapshotBlockStatusAsync(offset, length);

    protected override ValueTask DiscardCoreAsync(long offset, long length) =>
        DiscardUnmap ? Snapshot.DiscardSnapshotAsync(offset, length) : ValueTask.CompletedTask;

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        throw BlockException.NotSupported("Operation not supported");

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        throw BlockException.NotSupported("Operation not supported");

    protected override ValueTask FlushCoreAsync() => ValueTask.CompletedTask;
}
