using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Support;

/// <summary>A node that stores nothing and records every request that reaches its driver methods, in order.</summary>
internal sealed class CallLogNode : BlockNode
{
    public CallLogNode(
        long length, bool fua = false, bool zeroes = true, int alignment = 1, int maxTransfer = 32 << 20, int discardGranularity = 0)
        : base("log", readOnly: false)
    {
        Length = length;
        Capabilities = new BlockCapabilities(Fua: fua, WriteZeroes: zeroes);
        Limits = new BlockLimits(RequestAlignment: alignment, MaxTransfer: maxTransfer, DiscardGranularity: discardGranularity);
    }

    public override string DriverName => "call-log";

    public List<string> Calls { get; } = new();

    /// <summary>When set, write-zeroes fails with it before recording anything (a driver that refuses a range).</summary>
    public BlockException? ZeroesError { get; set; }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        buffer.Span.Clear();
        return ValueTask.CompletedTask;
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        Record($"write {offset}+{buffer.Length} {flags}");

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        ZeroesError is { } e ? ValueTask.FromException(e) : Record($"zero {offset}+{length} {flags}");

    protected override ValueTask DiscardCoreAsync(long offset, long length) => Record($"discard {offset}+{length}");

    protected override ValueTask FlushCoreAsync() => Record("flush");

    private ValueTask Record(string call)
    {
        lock (Calls)
        {
            Calls.Add(call);
        }

        return ValueTask.CompletedTask;
    }
}
