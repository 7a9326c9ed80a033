using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ExportServer.Nbd.Server;

/// <summary>sendfile(2): file bytes into a socket without a copy through this process's memory.</summary>
internal static partial class SendFile
{
    public const int EINTR = 4;
    public const int EAGAIN = 11;

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

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial nint Native(SafeSocketHandle outFd, SafeFileHandle inFd, ref long offset, nuint count);
}
