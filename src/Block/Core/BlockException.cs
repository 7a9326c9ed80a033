namespace ExportServer.Block.Core;

/// <summary>
/// The one error type of the block layer: an errno-like code plus a QEMU-style message.
/// Each edge (NBD, FUSE, QMP, command line) maps <see cref="Errno"/> in one switch.
/// </summary>
public sealed class BlockException : Exception
{
    public BlockException(Errno errno, string message, Exception? inner = null, string? hint = null)
        : base(message, inner)
    {
        Errno = errno;
        Hint = hint;
    }

    public Errno Errno { get; }

    /// <summary>
    /// QEMU's hint (error_append_hint): printed after the message on the command line, left out of a
    /// QMP error's description.
    /// </summary>
    public string? Hint { get; }

    /// <summary>The message and its hint, as QEMU prints an error on the command line.</summary>
    public string MessageWithHint => Hint is null ? Message : $"{Message}\n{Hint}";

    /// <summary>What the command line prints for <paramref name="e"/>: a block error's message with its hint.</summary>
    public static string Describe(Exception e) => e is BlockException b ? b.MessageWithHint : e.Message;

    public static BlockException Invalid(string message) => new(Errno.EINVAL, message);

    public static BlockException Io(string message, Exception? inner = null) => new(Errno.EIO, message, inner);

    public static BlockException NotSupported(string message) => new(Errno.ENOTSUP, message);

    /// <summary>
    /// Maps an exception from the runtime (I/O, sockets) to the errno it stands for, with strerror's
    /// text as the message: the runtime's own message is a resource key in the published binary.
    /// </summary>
    public static BlockException From(Exception e) => e is BlockException b ? b : new BlockException(ErrnoOf(e), Reason(e), e);

    /// <summary>The errno behind a runtime exception; an <see cref="IOException"/> on Unix carries it as its HResult.</summary>
    public static Errno ErrnoOf(Exception e) => e switch
    {
        BlockException b => b.Errno,
        FileNotFoundException or DirectoryNotFoundException => Errno.ENOENT,
        PathTooLongException => Errno.ENAMETOOLONG,
        IOException io when io.HResult is > 0 and < 4096 => (Errno)io.HResult,
        UnauthorizedAccessException => Errno.EACCES,
        OperationCanceledException => Errno.ECANCELED,
        OutOfMemoryException => Errno.ENOMEM,
        _ => Errno.EIO,
    };

    /// <summary>
    /// What a user reads for <paramref name="e"/> after "Could not open 'x': ": a block error's
    /// message, else the strerror text of its errno ("No such file or directory"), as QEMU prints.
    /// </summary>
    public static string Reason(Exception e) => e is BlockException b ? b.Message : Native.LibC.StrError((int)ErrnoOf(e));
}
