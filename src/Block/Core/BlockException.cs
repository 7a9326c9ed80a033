namespace ExportServer.Block.Core;

/// <summary>
/// The one error type of the block layer: an errno-like code plus a QEMU-style message.
/// Each edge (NBD, FUSE, QMP, command line) maps <see cref="Errno"/> in one switch.
/// </summary>
public sealed class BlockException : Exception
{
    public BlockException(Errno errno, string message, Exception? inner = null)
        : base(message, inner)
    {
        Errno = errno;
    }

    public Errno Errno { get; }

    public static BlockException Invalid(string message) => new(Errno.EINVAL, message);

    public static BlockException Io(string message, Exception? inner = null) => new(Errno.EIO, message, inner);

    public static BlockException NotSupported(string message) => new(Errno.ENOTSUP, message);

    /// <summary>Maps an exception from the runtime (I/O, sockets) to the errno it stands for.</summary>
    public static BlockException From(Exception e) => e switch
    {
        BlockException b => b,
        IOException io when io.HResult is > 0 and < 4096 => new BlockException((Errno)io.HResult, io.Message, io),
        UnauthorizedAccessException => new BlockException(Errno.EACCES, e.Message, e),
        FileNotFoundException or DirectoryNotFoundException => new BlockException(Errno.ENOENT, e.Message, e),
        OperationCanceledException => new BlockException(Errno.ECANCELED, e.Message, e),
        OutOfMemoryException => new BlockException(Errno.ENOMEM, e.Message, e),
        _ => new BlockException(Errno.EIO, e.Message, e),
    };
}
