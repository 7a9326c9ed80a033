using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// Device waits made on the calling thread when its caller allows it (<see cref="BlockingAllowed"/>):
/// a node on io_uring goes through the thread's own ring (<see cref="ThreadRing"/>), any other through
/// the plain system call. Each returns false, leaving the request to the asynchronous path, when the
/// caller does not allow it or the thread has no ring.
/// </summary>
internal sealed partial class FileNode
{
    private unsafe bool TryReadHere(DescriptorLease fd, Span<byte> buffer, long offset, out long result)
    {
        result = 0;
        if (!BlockingAllowed.Here)
        {
            return false;
        }

        if (_ring is null)
        {
            result = BlockingIoPool.ReadNow(fd.Fd, buffer, offset);
            return true;
        }

        if (ThreadRing.Current is not { } ring)
        {
            return false;
        }

        fixed (byte* p = buffer)
        {
            result = ring.Run(IoUringRequest.OpRead, fd.Fd, p, buffer.Length, offset, 0);
        }

        return true;
    }

    /// <summary>The whole buffer written with RWF_* <paramref name="rwFlags"/>: the byte count or -errno in <paramref name="result"/>.</summary>
    private unsafe bool TryWriteHere(DescriptorLease fd, ReadOnlySpan<byte> buffer, long offset, int rwFlags, out long result)
    {
        result = 0;
        if (!BlockingAllowed.Here)
        {
            return false;
        }

        if (_ring is null)
        {
            result = BlockingIoPool.WriteNow(fd.Fd, buffer, offset, rwFlags);
            return true;
        }

        if (ThreadRing.Current is not { } ring)
        {
            return false;
        }

        fixed (byte* p = buffer)
        {
            result = ring.WriteAll(fd.Fd, p, buffer.Length, offset, rwFlags);
        }

        return true;
    }

    /// <summary>fdatasync: 0 or the errno in <paramref name="errno"/>.</summary>
    private bool TrySyncHere(DescriptorLease fd, out int errno)
    {
        errno = 0;
        if (!BlockingAllowed.Here)
        {
            return false;
        }

        if (_ring is null)
        {
            errno = LibC.FDataSync(fd.Fd) == 0 ? 0 : Marshal.GetLastPInvokeError();
            return true;
        }

        if (ThreadRing.Current is not { } ring)
        {
            return false;
        }

        unsafe
        {
            errno = (int)-ring.Run(IoUringRequest.OpFsync, fd.Fd, null, 0, 0, IoUringRequest.FsyncDataSync);
        }

        return true;
    }
}
