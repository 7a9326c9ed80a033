using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// A <see cref="MemoryNode"/> whose reads wait until <see cref="Release"/>: a slow node, to keep a
/// request in flight while a test changes the graph.
/// </summary>
internal sealed class HeldNode : ForwardingNode
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public HeldNode(MemoryNode inner)
        : base(inner.NodeName + "-held", false, inner)
    {
        Memory = inner;
    }

    public MemoryNode Memory { get; }

    public override BlockNode Target => Memory;

    public override string DriverName => "held";

    /// <summary>Completes once a read has reached the node and is being held.</summary>
    public Task ReadEntered => _entered.Task;

    public void Release() => _release.TrySetResult();

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        _entered.TrySetResult();
        await _release.Task;
        await Memory.ReadAsync(offset, buffer);
    }
}
