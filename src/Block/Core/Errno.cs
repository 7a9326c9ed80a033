namespace ExportServer.Block.Core;

/// <summary>The errno values the block layer reports; numbers are Linux's so they map 1:1 at the edges.</summary>
public enum Errno
{
    EPERM = 1,
    ENOENT = 2,
    EIO = 5,
    ENOMEM = 12,
    EACCES = 13,
    EBUSY = 16,
    EEXIST = 17,
    EINVAL = 22,
    EFBIG = 27,
    ENOSPC = 28,
    EROFS = 30,
    ENAMETOOLONG = 36,
    EOVERFLOW = 75,
    ENOTSUP = 95,
    ESHUTDOWN = 108,
    ETIMEDOUT = 110,
    ECANCELED = 125,
}
