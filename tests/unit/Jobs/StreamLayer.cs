using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// An in-memory format layer with 4 KiB clusters, like a qcow2 image: a cluster is allocated once
/// written, unallocated clusters read from the backing node (zeroes without one), and block status
/// answers for this layer alone.
/// </summary>
internal sealed class StreamLayer : BlockNode
{
    public const int Cluster = 4096;

    private readonly byte[] _data;
    private readonly bool[] _allocated;

    public StreamLayer(string name, long length, bool readOnly = false)
        : base(name, readOnly)
    {
        _data = new byte[length];
        _allocated = new bool[length / Cluster];
        Length = length;
        Limits = new BlockLimits(RequestAlignment: Cluster);
        Capabilities = new BlockCapabilities(Backing: true);
    }

    public override string DriverName => "layer";

    public bool IsAllocated(long offset) => _allocated[offset / Cluster];

    /// <summary>This layer's own bytes, whatever the backing holds.</summary>
    public ReadOnlySpan<byte> Own(long offset, int length) => _data.AsSpan((int)offset, length);

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        for (var pos = 0; pos < buffer.Length; pos += Cluster)
        {
            var part = buffer.Slice(pos, Cluster);
            if (_allocated[(offset + pos) / Cluster])
            {
                _data.AsMemory((int)(offset + pos), Cluster).CopyTo(part);
            }
            else if (BackingChild is { } b)
            {
                await b.Node.ReadAsync(offset + pos, part);
            }
            else
            {
                part.Span.Clear();
            }
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        buffer.Span.CopyTo(_data.AsSpan((int)offset));
        _allocated.AsSpan((int)(offset / Cluster), buffer.Length / Cluster).Fill(true);
        return ValueTask.CompletedTask;
    }

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var first = offset / Cluster;
        var end = (offset + length + Cluster - 1) / Cluster;
        var state = _allocated[first];
        var i = first + 1;
        while (i < end && _allocated[i] == state)
        {
            i++;
        }

        var flags = state ? BlockStatusFlags.Data | BlockStatusFlags.Allocated : BlockStatusFlags.None;
        return ValueTask.FromResult(new BlockStatus(Math.Min(i * Cluster, offset + length) - offset, flags));
    }
}
