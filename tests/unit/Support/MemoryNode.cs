using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Support;

/// <summary>An in-memory protocol node for unit tests: a growable byte array with optional alignment.</summary>
internal sealed class MemoryNode : BlockNode, IImageInfoSource
{
    private readonly object _gate = new();
    private byte[] _data;

    /// <summary>Like QEMU's null driver: no driver information, and no space taken on disk.</summary>
    public BlockDriverInfo? DriverInfo => null;

    public long? AllocatedSize => 0;

    public MemoryNode(string name, long length, bool readOnly = false, int alignment = 1)
        : base(name, readOnly)
    {
        _data = new byte[length];
        Length = length;
        Limits = new BlockLimits(RequestAlignment: alignment);
        Capabilities = BlockCapabilities.Zeroing with { Truncate = true };
    }

    public MemoryNode(string name, byte[] contents, bool readOnly = false)
        : base(name, readOnly)
    {
        _data = contents;
        Length = contents.Length;
        Capabilities = BlockCapabilities.Zeroing with { Truncate = true };
    }

    public override string DriverName => "memory";

    public byte[] Data => _data;

    public int FlushCount { get; private set; }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        AssertAligned(offset, buffer.Length);
        lock (_gate)
        {
            _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
        }

        return ValueTask.CompletedTask;
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        AssertAligned(offset, buffer.Length);

        // Locked against a concurrent resize, which replaces the array.
        lock (_gate)
        {
            buffer.Span.CopyTo(_data.AsSpan((int)offset));
        }

        return ValueTask.CompletedTask;
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        AssertAligned(offset, length);
        lock (_gate)
        {
            _data.AsSpan((int)offset, (int)length).Clear();
        }

        return ValueTask.CompletedTask;
    }

    protected override ValueTask FlushCoreAsync()
    {
        FlushCount++;
        return ValueTask.CompletedTask;
    }

    protected override ValueTask TruncateCoreAsync(long length)
    {
        lock (_gate)
        {
            Array.Resize(ref _data, (int)length);
            Length = length;
        }

        return ValueTask.CompletedTask;
    }

    private void AssertAligned(long offset, long length)
    {
        if (((offset | length) & (Limits.RequestAlignment - 1)) != 0)
        {
            throw new InvalidOperationException($"unaligned request reached the driver: {offset}+{length}");
        }
    }
}
