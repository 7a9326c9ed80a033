using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>The one mapping from NBD wire errors back to block-layer errors; unknown numbers are EIO, as the protocol says.</summary>
internal static class NbdWireError
{
    public static Errno ToErrno(uint error) => error switch
    {
        NbdConstants.EPERM => Errno.EPERM,
        NbdConstants.EIO => Errno.EIO,
        NbdConstants.ENOMEM => Errno.ENOMEM,
        NbdConstants.EINVAL => Errno.EINVAL,
        NbdConstants.ENOSPC => Errno.ENOSPC,
        NbdConstants.EOVERFLOW => Errno.EOVERFLOW,
        NbdConstants.ENOTSUP => Errno.ENOTSUP,
        NbdConstants.ESHUTDOWN => Errno.ESHUTDOWN,
        _ => Errno.EIO,
    };
}
