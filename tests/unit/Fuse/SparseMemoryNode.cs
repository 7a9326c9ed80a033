using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;

namespace ExportServer.UnitTests.Fuse;

/// <summary>
/// A filter over a <see cref="MemoryNode"/> whose block status follows the content: a 4 KiB chunk
/// of zeroes is a hole, anything else data. Writes complete asynchronously (so replies come from
/// another thread, as with real drivers), reads can be made to fail, zero flags are recorded.
/// </summary>
internal sealed class SparseMemoryNode : BlockNode
{
    public const int Chunk = 4096;

    private readonly MemoryNode _memory;

    public SparseMemoryNode(long length, bool readOnly = false)
        : base("sparse", readOnly)
    {
        _memory = new MemoryNode("sparse-data", length);
        AttachChild("file", ChildRole.File, _memory);
        Length = length;
        Capabilities = BlockCapabilities.Zeroing with { Truncate = true };
    }

    public override string DriverName => "sparse-memory";

    public byte[] Data => _memory.Data;

    public int FlushCount => _memory.FlushCount;

    public bool FailReads { get; set; }

    public ZeroFlags? LastZeroFlags { get; private set; }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        FailReads ? throw BlockException.Io("injected read error") : _memory.ReadAsync(offset, buffer);

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        await Task.Yield();
        await _memory.WriteAsync(offset, buffer, flags);
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        LastZeroFlags = flags;
        return _memory.WriteZeroesAsync(offset, length, flags);
    }

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        await _memory.TruncateAsync(length);
        Length = length;
    }

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var data = IsData(offset);
        var end = offset;
        while (end < offset + length && IsData(end) == data)
        {
            end = Math.Min((end / Chunk + 1) * Chunk, offset + length);
        }

        var flags = BlockStatusFlags.Allocated | (data ? BlockStatusFlags.Data : BlockStatusFlags.Zero);
        return ValueTask.FromResult(new BlockStatus(end - offset, flags));
    }

    private bool IsData(long offset)
    {
        var start = (int)(offset / Chunk * Chunk);
        return Data.AsSpan(start, Math.Min(Chunk, Data.Length - start)).IndexOfAnyExcept((byte)0) >= 0;
    }
}
