using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Qmp;

/// <summary>An in-memory format node that can take a backing node: unwritten bytes read from the backing.</summary>
internal sealed class OverlayNode : BlockNode
{
    private readonly byte[] _data;
    private readonly bool[] _written;

    public OverlayNode(string name, long length)
        : base(name, readOnly: false)
    {
        _data = new byte[length];
        _written = new bool[length];
        Length = length;
        Capabilities = new BlockCapabilities(Backing: true);
    }

    public override string DriverName => "overlay";

    public bool Wrote(long offset) => _written[offset];

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        for (var i = 0; i < buffer.Length; i++)
        {
            if (_written[offset + i])
            {
                buffer.Span[i] = _data[offset + i];
            }
            else if (BackingChild is { } b)
            {
                await b.Node.ReadAsync(offset + i, buffer.Slice(i, 1));
            }
            else
            {
                buffer.Span[i] = 0;
            }
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        buffer.Span.CopyTo(_data.AsSpan((int)offset));
        _written.AsSpan((int)offset, buffer.Length).Fill(true);
        return ValueTask.CompletedTask;
    }
}
