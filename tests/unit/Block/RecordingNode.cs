using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;

namespace ExportServer.UnitTests.Block;

/// <summary>A forwarder over a <see cref="MemoryNode"/> that records, in order, the offset of every write reaching it.</summary>
internal sealed class RecordingNode(MemoryNode inner) : ForwardingNode(inner.NodeName + "-rec", false, inner)
{
    private readonly List<long> _writes = new();

    public MemoryNode Memory => inner;

    public override BlockNode Target => inner;

    public override string DriverName => "recording";

    public long[] Writes
    {
        get
        {
            lock (_writes)
            {
                return _writes.ToArray();
            }
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        lock (_writes)
        {
            _writes.Add(offset);
        }

        return inner.WriteAsync(offset, buffer, flags);
    }
}
