using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// A <see cref="MemoryNode"/> whose writes fail with <see cref="FailWith"/> while it is set: a
/// target that runs out of space or loses its connection and recovers later.
/// </summary>
internal sealed class FailingNode : ForwardingNode
{
    public FailingNode(MemoryNode inner)
        : base(inner.NodeName + "-failing", false, inner)
    {
        Memory = inner;
    }

    public MemoryNode Memory { get; }

    public override BlockNode Target => Memory;

    public override string DriverName => "failing";

    /// <summary>The errno writes fail with; null lets them through.</summary>
    public Errno? FailWith { get; set; }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        Check();
        return base.WriteCoreAsync(offset, buffer, flags);
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        Check();
        return base.WriteZeroesCoreAsync(offset, length, flags);
    }

    private void Check()
    {
        if (FailWith is { } errno)
        {
            throw new BlockException(errno, $"write failed: {errno}");
        }
    }
}
