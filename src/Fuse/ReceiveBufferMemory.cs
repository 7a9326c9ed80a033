using System.Buffers;

namespace ExportServer.Fuse;

/// <summary>
/// Native memory (libfuse's receive buffer) as <see cref="Memory{T}"/>, for a request that completes
/// before the memory is reused. It owns nothing: disposing it frees nothing.
/// </summary>
internal sealed unsafe class ReceiveBufferMemory(nint pointer, int length) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => new((void*)pointer, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new((byte*)pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
