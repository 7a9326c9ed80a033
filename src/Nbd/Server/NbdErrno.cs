using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>The one mapping from block-layer errors to NBD wire errors.</summary>
internal static class NbdErrno
{
    public static uint FromErrno(Errno errno) => errno switch
    {
        Errno.EPERM or Errno.EROFS => NbdConstants.EPERM,
        Errno.EIO => NbdConstants.EIO,
        Errno.ENOMEM => NbdConstants.ENOMEM,
        // QEMU's server has no case for EACCES (a snapshot range given up, a read-only protocol):
        // it falls to its default, EINVAL.
        Errno.EINVAL or Errno.EACCES => NbdConstants.EINVAL,
        Errno.ENOSPC or Errno.EFBIG => NbdConstants.ENOSPC,
        Errno.EOVERFLOW => NbdConstants.EOVERFLOW,
        Errno.ENOTSUP => NbdConstants.ENOTSUP,
        Errno.ESHUTDOWN => NbdConstants.ESHUTDOWN,
        _ => NbdConstants.EIO,
    };

    /// <summary>Maps any exception from a request to a wire error; anything not from the block layer is EIO.</summary>
    public static uint FromException(Exception e) => e is BlockException b ? FromErrno(b.Errno) : NbdConstants.EIO;
}
