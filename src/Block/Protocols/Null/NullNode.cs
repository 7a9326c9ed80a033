using ExportServer.Block.Core;

namespace ExportServer.Block.Protocols.Null;

/// <summary>
/// Discards writes and, as in QEMU 7.2, leaves read buffers untouched unless read-zeroes is on.
/// Every request but block status waits <c>latency</c> first, to model a slow device.
/// </summary>
internal sealed class NullNode : BlockNode, IImageInfoSource
{
    private readonly TimeSpan _latency;
    private readonly bool _readZeroes;

    public NullNode(string nodeName, string driverName, bool readOnly, long size, TimeSpan latency, bool readZeroes)
        : base(nodeName, readOnly)
    {
        DriverName = driverName;
        Length = size;
        _latency = latency;
        _readZeroes = readZeroes;
        Capabilities = BlockCapabilities.Zeroing;
    }

    public override string DriverName { get; }

    public override string FileName => DriverName + "://";

    /// <summary>QEMU's null driver has no bdrv_get_info (no dirty flag shown) but says it takes no space.</summary>
    public BlockDriverInfo? DriverInfo => null;

    public long? AllocatedSize => 0;

    private ValueTask DelayAsync() =>
        _latency > TimeSpan.Zero ? new ValueTask(Task.Delay(_latency)) : ValueTask.CompletedTask;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await DelayAsync().ConfigureAwait(false);
        if (_readZeroes)
        {
            buffer.Span.Clear();
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) => DelayAsync();

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) => DelayAsync();

    protected override ValueTask DiscardCoreAsync(long offset, long length) => DelayAsync();

    protected override ValueTask FlushCoreAsync() => DelayAsync();

    /// <summary>
    /// Like QEMU: nothing is stored, so no data; zeroes only with read-zeroes. The range still belongs
    /// to this layer, so that nobody above concludes it reads as zeroes when it does not.
    /// </summary>
    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        ValueTask.FromResult(new BlockStatus(length, BlockStatusFlags.Allocated | (_readZeroes ? BlockStatusFlags.Zero : BlockStatusFlags.None)));
}
