using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>
/// The libfuse3 low-level API (Debian libfuse3-3, ABI FUSE_3.0). A <c>fuse_req_t</c> is a
/// <see cref="nint"/>; every request must be answered by exactly one <c>fuse_reply_*</c> call,
/// which frees it. The reply functions are thread-safe.
/// </summary>
internal static unsafe partial class LibFuse
{
    private const string Library = "libfuse3.so.3";

    /// <summary>The inode of the mounted file itself.</summary>
    public const ulong RootInode = 1;

    public const int SetAttrMode = 1 << 0;
    public const int SetAttrUid = 1 << 1;
    public const int SetAttrGid = 1 << 2;
    public const int SetAttrSize = 1 << 3;

    [LibraryImport(Library, EntryPoint = "fuse_session_new")]
    public static partial nint SessionNew(FuseArgs* args, FuseLowLevelOps* ops, nuint opSize, nint userData);

    [LibraryImport(Library, EntryPoint = "fuse_session_mount", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SessionMount(nint session, string mountPoint);

    [LibraryImport(Library, EntryPoint = "fuse_session_unmount")]
    public static partial void SessionUnmount(nint session);

    [LibraryImport(Library, EntryPoint = "fuse_session_destroy")]
    public static partial void SessionDestroy(nint session);

    [LibraryImport(Library, EntryPoint = "fuse_session_exited")]
    public static partial int SessionExited(nint session);

    /// <summary>Blocks until a request arrives; returns its size, 0 when the session ended, or -errno.</summary>
    [LibraryImport(Library, EntryPoint = "fuse_session_receive_buf")]
    public static partial int SessionReceiveBuf(nint session, FuseBuf* buf);

    /// <summary>Decodes one request and calls the matching operation on the calling thread.</summary>
    [LibraryImport(Library, EntryPoint = "fuse_session_process_buf")]
    public static partial void SessionProcessBuf(nint session, FuseBuf* buf);

    [LibraryImport(Library, EntryPoint = "fuse_opt_free_args")]
    public static partial void OptFreeArgs(FuseArgs* args);

    [LibraryImport(Library, EntryPoint = "fuse_req_userdata")]
    public static partial nint ReqUserData(nint req);

    [LibraryImport(Library, EntryPoint = "fuse_reply_err")]
    public static partial int ReplyErr(nint req, int errno);

    [LibraryImport(Library, EntryPoint = "fuse_reply_buf")]
    public static partial int ReplyBuf(nint req, byte* buf, nuint size);

    [LibraryImport(Library, EntryPoint = "fuse_reply_write")]
    public static partial int ReplyWrite(nint req, nuint count);

    [LibraryImport(Library, EntryPoint = "fuse_reply_attr")]
    public static partial int ReplyAttr(nint req, Stat* attr, double attrTimeout);

    [LibraryImport(Library, EntryPoint = "fuse_reply_open")]
    public static partial int ReplyOpen(nint req, FuseFileInfo* fi);

    [LibraryImport(Library, EntryPoint = "fuse_reply_lseek")]
    public static partial int ReplyLseek(nint req, long offset);

    [LibraryImport(Library, EntryPoint = "fuse_reply_statfs")]
    public static partial int ReplyStatFs(nint req, StatVfs* stat);

    /// <summary>Routes libfuse's diagnostics; the callback gets (level, format, va_list).</summary>
    [LibraryImport(Library, EntryPoint = "fuse_set_log_func")]
    public static partial void SetLogFunc(delegate* unmanaged<int, byte*, nint, void> func);
}
