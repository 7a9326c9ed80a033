using System.Buffers;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>One asynchronous librbd call and its arguments, started with a completion.</summary>
internal readonly unsafe struct RbdOp
{
    private readonly Kind _kind;
    private readonly nint _image;
    private readonly ulong _offset;
    private readonly ulong _length;
    private readonly byte* _buffer;
    private readonly int _flags;

    private RbdOp(Kind kind, nint image, ulong offset, ulong length, byte* buffer = null, int flags = 0)
    {
        _kind = kind;
        _image = image;
        _offset = offset;
        _length = length;
        _buffer = buffer;
        _flags = flags;
    }

    private enum Kind
    {
        Read,
        Write,
        Discard,
        WriteZeroes,
        Flush,
    }

    public static RbdOp Read(nint image, long offset, int length, MemoryHandle buffer) => new(Kind.Read, image, (ulong)offset, (ulong)length, (byte*)buffer.Pointer);

    public static RbdOp Write(nint image, long offset, int length, MemoryHandle buffer) => new(Kind.Write, image, (ulong)offset, (ulong)length, (byte*)buffer.Pointer);

    public static RbdOp Discard(nint image, long offset, long length) => new(Kind.Discard, image, (ulong)offset, (ulong)length);

    public static RbdOp WriteZeroes(nint image, long offset, long length, int zeroFlags) =>
        new(Kind.WriteZeroes, image, (ulong)offset, (ulong)length, flags: zeroFlags);

    public static RbdOp Flush(nint image) => new(Kind.Flush, image, 0, 0);

    public int Start(nint completion) => _kind switch
    {
        Kind.Read => LibRbd.rbd_aio_read(_image, _offset, (nuint)_length, _buffer, completion),
        Kind.Write => LibRbd.rbd_aio_write(_image, _offset, (nuint)_length, _buffer, completion),
        Kind.Discard => LibRbd.rbd_aio_discard(_image, _offset, _length, completion),
        Kind.WriteZeroes => LibRbd.rbd_aio_write_zeroes(_image, _offset, (nuint)_length, completion, _flags, 0),
        _ => LibRbd.rbd_aio_flush(_image, completion),
    };
}
