using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;
using Microsoft.Win32.SafeHandles;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// Image locking compatible with QEMU's file-posix: one-byte open-file-description (OFD) read locks
/// at <see cref="PermissionBase"/>+bit for every permission held and <see cref="SharedBase"/>+bit for
/// every permission not shared. A conflict is another process holding the complementary byte, found
/// with F_OFD_GETLK (locks of our own open file description never conflict with themselves).
/// </summary>
internal static unsafe class ImageLock
{
    public const int PermissionBase = 100;
    public const int SharedBase = 200;
    private const int PermissionBits = 4;

    private static readonly string[] Names = ["consistent read", "write", "write unchanged", "resize"];

    /// <summary>Whether the kernel and file system support OFD locks on this file (QEMU's locking=auto).</summary>
    public static bool IsSupported(SafeFileHandle handle)
    {
        var probe = new Flock { Type = LibC.F_WRLCK, Start = PermissionBase, Length = 1 };
        return LibC.FcntlLock(handle.DangerousGetHandle(), LibC.F_OFD_GETLK, &probe) == 0;
    }

    /// <summary>
    /// Takes the lock bytes for <paramref name="held"/> and the complement of <paramref name="shared"/>,
    /// releases the others, then checks that no other process conflicts; throws QEMU's error if one does.
    /// </summary>
    public static void Apply(SafeFileHandle handle, BlockPermissions held, BlockPermissions shared, string fileName)
    {
        var fd = handle.DangerousGetHandle();
        for (var i = 0; i < PermissionBits; i++)
        {
            var bit = (BlockPermissions)(1 << i);
            SetByte(fd, PermissionBase + i, (held & bit) != 0, fileName);
            SetByte(fd, SharedBase + i, (shared & bit) == 0, fileName);
        }

        for (var i = 0; i < PermissionBits; i++)
        {
            var bit = (BlockPermissions)(1 << i);
            if ((held & bit) != 0 && IsLockedByOthers(fd, SharedBase + i))
            {
                throw Conflict($"Failed to get \"{Names[i]}\" lock", fileName);
            }
        }

        for (var i = 0; i < PermissionBits; i++)
        {
            var bit = (BlockPermissions)(1 << i);
            if ((shared & bit) == 0 && IsLockedByOthers(fd, PermissionBase + i))
            {
                throw Conflict($"Failed to get shared \"{Names[i]}\" lock", fileName);
            }
        }
    }

    /// <summary>
    /// Releases every lock byte of the open file description. Closing the descriptor would too, but
    /// only once no copy of it is left: a process being started inherits one until it executes its
    /// program, and the image would stay locked against the next open meanwhile.
    /// </summary>
    public static void Release(SafeFileHandle handle)
    {
        var fl = new Flock { Type = LibC.F_UNLCK, Start = 0, Length = 0 };
        _ = LibC.FcntlLock(handle.DangerousGetHandle(), LibC.F_OFD_SETLK, &fl);
    }

    private static void SetByte(nint fd, int offset, bool locked, string fileName)
    {
        var fl = new Flock { Type = locked ? LibC.F_RDLCK : LibC.F_UNLCK, Start = offset, Length = 1 };
        if (LibC.FcntlLock(fd, LibC.F_OFD_SETLK, &fl) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new BlockException(errno == LibC.EAGAIN ? Errno.EBUSY : (Errno)errno,
                $"Failed to lock byte {offset}", hint: Hint(fileName));
        }
    }

    private static bool IsLockedByOthers(nint fd, int offset)
    {
        var fl = new Flock { Type = LibC.F_WRLCK, Start = offset, Length = 1 };
        if (LibC.FcntlLock(fd, LibC.F_OFD_GETLK, &fl) != 0)
        {
            // QEMU treats a failing test as a conflict too.
            return true;
        }

        return fl.Type != LibC.F_UNLCK;
    }

    private static BlockException Conflict(string message, string fileName) =>
        new(Errno.EBUSY, message, hint: Hint(fileName));

    private static string Hint(string fileName) => $"Is another process using the image [{fileName}]?";
}
