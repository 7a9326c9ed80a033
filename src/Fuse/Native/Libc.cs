using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>The few libc calls the export needs that .NET does not expose with errno intact.</summary>
internal static unsafe partial class Libc
{
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int EACCES = 13;
    public const int EINVAL = 22;
    public const int EROFS = 30;
    public const int EOPNOTSUPP = 95;
    public const int ENOTCONN = 107;

    public const int SeekData = 3;
    public const int SeekHole = 4;

    public const int FallocKeepSize = 0x01;
    public const int FallocPunchHole = 0x02;
    public const int FallocZeroRange = 0x10;

    /// <summary>stat(2); on failure returns -1 and the errno is in <see cref="Marshal.GetLastPInvokeError"/>.</summary>
    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int StatPath(string path, Stat* buf);

    /// <summary>umount2 flag: detach now, clean up when the last user is gone.</summary>
    public const int MntDetach = 2;

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEUid();

    [LibraryImport("libc", EntryPoint = "getuid")]
    public static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "getgid")]
    public static partial uint GetGid();

    /// <summary>vsnprintf(3), to format libfuse's log messages (a va_list is a pointer on x86_64).</summary>
    [LibraryImport("libc", EntryPoint = "vsnprintf")]
    public static partial int VsnPrintf(byte* buffer, nuint size, byte* format, nint args);

    [LibraryImport("libc", EntryPoint = "free")]
    public static partial void Free(nint pointer);
}
