using System.Runtime.InteropServices;

namespace ExportServer.Block.Protocols.Gluster;

/// <summary>
/// The libgfapi calls the gluster driver uses (Debian's libgfapi0, GlusterFS 10, the GFAPI_6.0
/// symbol versions). Calls return -1 (or null) and set errno; asynchronous calls report through a
/// callback (fd, result, pre-stat, post-stat, argument) on a libgfapi thread, errno set there too.
/// Loaded on first use.
/// </summary>
internal static unsafe partial class LibGfapi
{
    private const string Lib = "libgfapi.so.0";

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint glfs_new(string volume);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int glfs_set_volfile_server(nint fs, string transport, string host, int port);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int glfs_set_logging(nint fs, string logFile, int level);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_init(nint fs);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_fini(nint fs);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint glfs_open(nint fs, string path, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_close(nint fd);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint glfs_creat(nint fs, string path, int flags, uint mode);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_fallocate(nint fd, int keepSize, long offset, nuint length);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_zerofill(nint fd, long offset, long length);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial long glfs_lseek(nint fd, long offset, int whence);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_ftruncate(nint fd, long length, nint preStat, nint postStat);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_pread_async(nint fd, byte* buffer, nuint count, long offset, int flags, delegate* unmanaged<nint, nint, nint, nint, nint, void> callback, nint arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_pwrite_async(nint fd, byte* buffer, nuint count, long offset, int flags, delegate* unmanaged<nint, nint, nint, nint, nint, void> callback, nint arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_fsync_async(nint fd, delegate* unmanaged<nint, nint, nint, nint, nint, void> callback, nint arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_discard_async(nint fd, long offset, nuint length, delegate* unmanaged<nint, nint, nint, nint, nint, void> callback, nint arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int glfs_zerofill_async(nint fd, long offset, long length, delegate* unmanaged<nint, nint, nint, nint, nint, void> callback, nint arg);
}
