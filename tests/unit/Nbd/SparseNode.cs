using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Nbd;

/// <summary>
/// An in-memory node whose block status is computed per 4 KiB block: an all-zero block is a zero hole,
/// or, when the node has a backing node, unallocated (so the backing node answers). Reads of
/// <see cref="GatedOffset"/> wait for <see cref="Gate"/>, to force replies out of order.
/// </summary>
internal sealed class SparseNode : BlockNode
{
    public const int Block = 4096;

    public SparseNode(string name, byte[] data, SparseNode? backing = null, bool readOnly = false)
        : base(name, readOnly)
    {
        Data = data;
        Length = data.Length;
        if (backing is not null)
        {
            AttachChild("backing", ChildRole.Backing, backing);
        }
        Capabilities = BlockCapabilities.Zeroing;
    }

    public byte[] Data { get; }

    public long GatedOffset { get; set; } = -1;

    public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Reads that have reached <see cref="Gate"/>.</summary>
    public int GatedReads => _gatedReads;

    private int _gatedReads;

    public override string DriverName => "sparse";

    /// <summary>When set, the driver refuses efficient zeroing (ENOTSUP), as a file system without fallocate would.</summary>
    public bool RefuseZeroes { get; set; }

    /// <summary>The scheduler that ran the last read.</summary>
    public TaskScheduler? LastReadScheduler { get; private set; }

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        LastReadScheduler = TaskScheduler.Current;
        if (offset == GatedOffset)
        {
            Interlocked.Increment(ref _gatedReads);
            await Gate.Task;
        }

        Data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        buffer.Span.CopyTo(Data.AsSpan((int)offset));
        return ValueTask.CompletedTask;
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        if (RefuseZeroes)
        {
            throw BlockException.NotSupported("cannot zero efficiently");
        }

        Data.AsSpan((int)offset, (int)length).Clear();
        return ValueTask.CompletedTask;
    }

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var zero = IsZeroBlock(offset);
        var end = offset;
        while (end < offset + length && IsZeroBlock(end) == zero)
        {
            end = ((end / Block) + 1) * Block;
        }

        var flags = !zero ? BlockStatusFlags.Data | BlockStatusFlags.Allocated
            : BackingChild is null ? BlockStatusFlags.Zero | BlockStatusFlags.Allocated
            : BlockStatusFlags.None;
        return ValueTask.FromResult(new BlockStatus(Math.Min(end, offset + length) - offset, flags));
    }

    private bool IsZeroBlock(long offset)
    {
        var start = (int)(offset / Block * Block);
        return !Data.AsSpan(start, Math.Min(Block, Data.Length - start)).ContainsAnyExcept((byte)0);
    }
}
