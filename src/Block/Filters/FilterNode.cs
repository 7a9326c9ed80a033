using ExportServer.Block.Core;

namespace ExportServer.Block.Filters;

/// <summary>
/// A node that passes every request unchanged to its 'file' child; a filter overrides only what it
/// changes. Size, resize and zero capabilities follow the child; limits are the child's at open.
/// Block status is the child's, as for QEMU's filters (a filter adds no layer of its own).
/// </summary>
internal abstract class FilterNode : BlockNode
{
    protected FilterNode(string nodeName, bool readOnly, BlockNode child)
        : base(nodeName, readOnly)
    {
        Child = child;
        Limits = child.Limits;
        AttachChild("file", ChildRole.File, child);
    }

    /// <summary>The filtered node.</summary>
    protected BlockNode Child { get; }

    public override long Length => Child.Length;

    public override bool CanTruncate => Child.CanTruncate;

    public override bool CanFastZero => Child.CanFastZero;

    protected override bool SupportsFua => true;

    protected override bool SupportsWriteZeroes => true;

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) => Child.ReadAsync(offset, buffer);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        Child.WriteAsync(offset, buffer, flags);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        Child.WriteZeroesAsync(offset, length, flags);

    protected override ValueTask DiscardCoreAsync(long offset, long length) => Child.DiscardAsync(offset, length);

    protected override ValueTask FlushCoreAsync() => Child.FlushAsync();

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        Child.GetBlockStatusAsync(offset, length);

    protected override ValueTask TruncateCoreAsync(long length) => Child.TruncateAsync(length);
}
