using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse.Native;

/// <summary>
/// The entry points libfuse calls. Each finds its <see cref="FuseOperations"/> through the
/// session's user data (a GCHandle) and forwards; an exception must not cross into native code,
/// so whatever escapes an operation before it replied becomes one EIO reply.
/// </summary>
internal static unsafe class FuseCallbacks
{
    private static ILogger? s_logger;

    [ThreadStatic]
    private static string? t_lastMessage;

    /// <summary>The table passed to fuse_session_new (which copies it).</summary>
    public static FuseLowLevelOps CreateOps() => new()
    {
        Init = (nint)(delegate* unmanaged<nint, FuseConnInfo*, void>)&Init,
        Lookup = (nint)(delegate* unmanaged<nint, ulong, byte*, void>)&Lookup,
        GetAttr = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&GetAttr,
        SetAttr = (nint)(delegate* unmanaged<nint, ulong, Stat*, int, FuseFileInfo*, void>)&SetAttr,
        Open = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&Open,
        Read = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&Read,
        Write = (nint)(delegate* unmanaged<nint, ulong, byte*, nuint, long, FuseFileInfo*, void>)&Write,
        Flush = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&Flush,
        Release = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&Release,
        Fsync = (nint)(delegate* unmanaged<nint, ulong, int, FuseFileInfo*, void>)&Fsync,
        StatFs = (nint)(delegate* unmanaged<nint, ulong, void>)&StatFs,
        Fallocate = (nint)(delegate* unmanaged<nint, ulong, int, long, long, FuseFileInfo*, void>)&Fallocate,
        Lseek = (nint)(delegate* unmanaged<nint, ulong, long, int, FuseFileInfo*, void>)&Lseek,
    };

    /// <summary>Routes libfuse's messages to <paramref name="logger"/> and remembers the last one per thread.</summary>
    public static void InstallLog(ILogger? logger)
    {
        if (logger is not null)
        {
            s_logger = logger;
        }

        LibFuse.SetLogFunc(&Log);
    }

    /// <summary>The last message libfuse logged on this thread since the previous call (mount failures).</summary>
    public static string? TakeLastMessage()
    {
        var m = t_lastMessage;
        t_lastMessage = null;
        return m;
    }

    [UnmanagedCallersOnly]
    private static void Log(int level, byte* format, nint args)
    {
        try
        {
            const int size = 1024;
            var buffer = stackalloc byte[size];
            var n = Libc.VsnPrintf(buffer, size, format, args);
            var text = Encoding.UTF8.GetString(buffer, Math.Clamp(n, 0, size - 1)).TrimEnd('\n');
            t_lastMessage = text;
            if (s_logger is { } logger)
            {
                FuseLog.LibFuseMessage(logger, text);
            }
        }
        catch (Exception)
        {
            // Logging must never take the daemon down.
        }
    }

    private static FuseOperations? From(nint req) =>
        GCHandle.FromIntPtr(LibFuse.ReqUserData(req)).Target as FuseOperations;

    private static void Guard(nint req, Exception e) => LibFuse.ReplyErr(req, FuseOperations.ToErrno(e));

    [UnmanagedCallersOnly]
    private static void Init(nint userData, FuseConnInfo* conn)
    {
        // max_read must equal the mount option; async reads on; no write-back cache and no splice,
        // so every write reaches the node in order and arrives in memory.
        conn->MaxRead = FuseOperations.MaxRead;
        conn->MaxWrite = conn->MaxWrite == 0 ? FuseOperations.MaxWrite : Math.Min(conn->MaxWrite, (uint)FuseOperations.MaxWrite);
        conn->Want |= conn->Capable & FuseConnInfo.CapAsyncRead;
        conn->Want &= ~(FuseConnInfo.CapWritebackCache | FuseConnInfo.CapSpliceRead | FuseConnInfo.CapSpliceWrite | FuseConnInfo.CapSpliceMove);
    }

    [UnmanagedCallersOnly]
    private static void Lookup(nint req, ulong parent, byte* name)
    {
        try
        {
            From(req)!.Lookup(req);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void GetAttr(nint req, ulong inode, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.GetAttr(req, inode);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void SetAttr(nint req, ulong inode, Stat* attr, int toSet, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.SetAttr(req, inode, *attr, toSet);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Open(nint req, ulong inode, FuseFileInfo* fi)
    {
        // Any open succeeds, as in QEMU; permissions are the kernel's (default_permissions) and a
        // read-only export refuses the writes themselves.
        LibFuse.ReplyOpen(req, fi);
    }

    [UnmanagedCallersOnly]
    private static void Read(nint req, ulong inode, nuint size, long offset, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.Read(req, offset, size);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Write(nint req, ulong inode, byte* buf, nuint size, long offset, FuseFileInfo* fi)
    {
        try
        {
            if (size > int.MaxValue)
            {
                LibFuse.ReplyErr(req, Libc.EINVAL);
                return;
            }

            From(req)!.Write(req, new ReadOnlySpan<byte>(buf, (int)size), offset, (nint)buf);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Flush(nint req, ulong inode, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.Flush(req);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Release(nint req, ulong inode, FuseFileInfo* fi) => LibFuse.ReplyErr(req, 0);

    [UnmanagedCallersOnly]
    private static void Fsync(nint req, ulong inode, int dataSync, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.Flush(req);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void StatFs(nint req, ulong inode)
    {
        try
        {
            From(req)!.StatFs(req);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Fallocate(nint req, ulong inode, int mode, long offset, long length, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.Fallocate(req, mode, offset, length);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }

    [UnmanagedCallersOnly]
    private static void Lseek(nint req, ulong inode, long offset, int whence, FuseFileInfo* fi)
    {
        try
        {
            From(req)!.Lseek(req, offset, whence);
        }
        catch (Exception e)
        {
            Guard(req, e);
        }
    }
}
