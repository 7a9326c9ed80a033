using System.Runtime.InteropServices;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// The inline fast path of buffered I/O: preadv2/pwritev2 with RWF_NOWAIT complete on the calling
/// thread when the page cache can serve them and fail with EAGAIN when they would have to wait, in
/// which case the request goes to the thread pool. This saves two thread switches per cached request
/// without ever blocking the caller on the device.
/// </summary>
internal sealed partial class FileNode
{
    private bool _noWaitReads = true;
    private bool _noWaitWrites = true;

    /// <summary>Bytes read without waiting (0 at the end of the file), or -1 when the slow path must do it.</summary>
    private unsafe int TryReadNoWait(nint fd, long offset, Span<byte> buffer)
    {
        if (!_noWaitReads)
        {
            return -1;
        }

        fixed (byte* p = buffer)
        {
            var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
            var n = LibC.PReadV2(fd, &iov, 1, offset, LibC.RWF_NOWAIT);
            if (n < 0 && IsRwFlagUnsupported(Marshal.GetLastPInvokeError()))
            {
                _noWaitReads = false;
            }

            return (int)Math.Max(n, -1);
        }
    }

    /// <summary>Bytes written without waiting, or -1 when the slow path must do it.</summary>
    private unsafe int TryWriteNoWait(nint fd, long offset, ReadOnlySpan<byte> buffer)
    {
        if (!_noWaitWrites)
        {
            return -1;
        }

        fixed (byte* p = buffer)
        {
            var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
            var n = LibC.PWriteV2(fd, &iov, 1, offset, LibC.RWF_NOWAIT);
            if (n < 0 && IsRwFlagUnsupported(Marshal.GetLastPInvokeError()))
            {
                _noWaitWrites = false;
            }

            return (int)Math.Max(n, -1);
        }
    }

    /// <summary>Errors that mean the kernel or file system does not offer an RWF_ flag at all (as opposed to EAGAIN).</summary>
    private static bool IsRwFlagUnsupported(int errno) => errno is LibC.ENOSYS or LibC.EOPNOTSUPP or LibC.EINVAL;
}
