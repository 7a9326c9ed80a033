using System.Buffers;
using System.Runtime.InteropServices;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.Gluster;

/// <summary>libgfapi's asynchronous calls, each ending a <see cref="NativeCompletion"/> from its callback.</summary>
internal static unsafe class GlusterOp
{
    public static ValueTask<long> Read(nint fd, long offset, int length, MemoryHandle pin)
    {
        var request = NativeCompletion.Rent(pin);
        return Started(request, LibGfapi.glfs_pread_async(fd, (byte*)pin.Pointer, (nuint)length, offset, 0, &OnComplete, request.Argument));
    }

    public static ValueTask<long> Write(nint fd, long offset, int length, MemoryHandle pin)
    {
        var request = NativeCompletion.Rent(pin);
        return Started(request, LibGfapi.glfs_pwrite_async(fd, (byte*)pin.Pointer, (nuint)length, offset, 0, &OnComplete, request.Argument));
    }

    public static ValueTask<long> Flush(nint fd)
    {
        var request = NativeCompletion.Rent();
        return Started(request, LibGfapi.glfs_fsync_async(fd, &OnComplete, request.Argument));
    }

    public static ValueTask<long> Discard(nint fd, long offset, long length)
    {
        var request = NativeCompletion.Rent();
        return Started(request, LibGfapi.glfs_discard_async(fd, offset, (nuint)length, &OnComplete, request.Argument));
    }

    public static ValueTask<long> WriteZeroes(nint fd, long offset, long length)
    {
        var request = NativeCompletion.Rent();
        return Started(request, LibGfapi.glfs_zerofill_async(fd, offset, length, &OnComplete, request.Argument));
    }

    private static ValueTask<long> Started(NativeCompletion request, int r) =>
        r < 0 ? request.Fail(-Marshal.GetLastPInvokeError()) : request.Task;

    /// <summary>libgfapi's callback: a negative result means errno, set on this thread, tells why.</summary>
    [UnmanagedCallersOnly]
    private static void OnComplete(nint fd, nint result, nint preStat, nint postStat, nint arg) =>
        NativeCompletion.Complete(arg, result < 0 ? -Marshal.GetLastSystemError() : result);
}
