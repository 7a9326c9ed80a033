using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ExportServer.Nbd.Server;

/// <summary>
/// sendfile(2): file bytes into a socket without a copy through this process's memory; and the
/// send of the reply header in front of them, flagged MSG_MORE.
/// </summary>
internal static partial class SendFile
{
    public const int EINTR = 4;
    public const int EAGAIN = 11;

    private const int MsgDontWait = 0x40;
    private const int MsgMore = 0x8000;
    private const int MsgNoSignal = 0x4000;

    /// <summary>
    /// Sends up to <paramref name="count"/> bytes of <paramref name="file"/> from <paramref name="offset"/>
    /// (advanced by what was sent) into the non-blocking <paramref name="socket"/>: the byte count,
    /// 0 at the end of the file, or -errno (-EAGAIN: the socket is full).
    /// </summary>
    public static long Send(SafeSocketHandle socket, SafeFileHandle file, ref long offset, int count)
    {
        var n = Native(socket, file, ref offset, (nuint)count);
        return n >= 0 ? n : -Marshal.GetLastPInvokeError();
    }

    /// <summary>
    /// Sends as much of <paramref name="data"/> as the socket takes now, without waiting, flagged
    /// MSG_MORE: more data follows at once, so TCP keeps these bytes for the segment that carries it
    /// instead of sending them alone (with TCP_NODELAY a 28-byte reply header would otherwise leave
    /// as a packet of its own, and wake the client for it). The byte count, or -errno (-EAGAIN: the
    /// socket is full).
    /// </summary>
    public static long SendMore(SafeSocketHandle socket, ArraySegment<byte> data)
    {
        var n = SendNative(socket, ref MemoryMarshal.GetReference(data.AsSpan()), (nuint)data.Count, MsgMore | MsgDontWait | MsgNoSignal);
        return n >= 0 ? n : -Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial nint Native(SafeSocketHandle outFd, SafeFileHandle inFd, ref long offset, nuint count);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendNative(SafeSocketHandle fd, ref byte data, nuint length, int flags);
}
