namespace ExportServer.Block.Core;

/// <summary>
/// A node that adds no layer of its own and passes every request unchanged to <see cref="Target"/>:
/// the base of filters (which override only what they change) and of <see cref="BlockRoot"/>. Size,
/// resize and zero capabilities are the target's; block status is the target's, and the backing-chain
/// walk starts at the target, as QEMU skips filters in block_status_above.
/// </summary>
public abstract class ForwardingNode : BlockNode
{
    /// <param name="target">The node requests go to at first, whose capabilities this node takes over.</param>
    protected ForwardingNode(string nodeName, bool readOnly, BlockNode target)
        : base(nodeName, readOnly)
    {
        Capabilities = Forwarded(target.Capabilities);
    }

    /// <summary>The node requests go to.</summary>
    public abstract BlockNode Target { get; }

    public override long Length => Target.Length;

    /// <summary>
    /// What a forwarder can do over a target that can do <paramref name="target"/>: FUA and zero
    /// writes go down as they are (the target's own path emulates what it lacks); resizing and fast
    /// zeroes are the target's; compressed writes are not forwarded.
    /// </summary>
    protected static BlockCapabilities Forwarded(BlockCapabilities target) =>
        new(Fua: true, WriteZeroes: true, FastZero: target.FastZero, Truncate: target.Truncate);

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) => Target.ReadAsync(offset, buffer);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        Target.WriteAsync(offset, buffer, flags);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        Target.WriteZeroesAsync(offset, length, flags);

    protected override ValueTask DiscardCoreAsync(long offset, long length) => Target.DiscardAsync(offset, length);

    protected override ValueTask FlushCoreAsync() => Target.FlushAsync();

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        Target.GetBlockStatusAsync(offset, length);

    protected override ValueTask TruncateCoreAsync(long length) => Target.TruncateAsync(length);
}
