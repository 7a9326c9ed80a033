using System.Buffers;
using System.Runtime.InteropServices;

namespace ExportServer.Block.Core;

/// <summary>Native memory aligned for O_DIRECT; owned, freed on dispose.</summary>
public sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private void* _pointer;
    private readonly int _length;

    public AlignedBuffer(int length, int alignment = 4096)
    {
        _length = length;
        _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(length, 1), (nuint)alignment);
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new((byte*)_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}
