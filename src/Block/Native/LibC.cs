using System.Runtime.InteropServices;

namespace ExportServer.Block.Native;

/// <summary>
/// The libc calls the block layer needs beyond what .NET offers (x86_64/aarch64 Linux, glibc).
/// Every call sets the last P/Invoke error; callers read it with <see cref="Marshal.GetLastPInvokeError"/>.
/// </summary>
internal static unsafe partial class LibC
{
    private const string Lib = "libc";

    public const int O_RDONLY = 0x0;
    public const int O_WRONLY = 0x1;
    public const int O_RDWR = 0x2;
    public const int O_CREAT = 0x40;
    public const int O_TRUNC = 0x200;
    public const int O_DIRECT = 0x4000;
    public const int O_CLOEXEC = 0x80000;

    public const int SEEK_END = 2;
    public const int SEEK_DATA = 3;
    public const int SEEK_HOLE = 4;

    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    public const int F_OFD_GETLK = 36;
    public const int F_OFD_SETLK = 37;

    public const short F_RDLCK = 0;
    public const short F_WRLCK = 1;
    public const short F_UNLCK = 2;

    /// <summary>preadv2/pwritev2: fail with EAGAIN instead of waiting for the device or for locks.</summary>
    public const int RWF_NOWAIT = 0x8;

    /// <summary>pwritev2: the write is on stable storage when it returns, as if followed by fdatasync of its range.</summary>
    public const int RWF_DSYNC = 0x2;

    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int EINVAL = 22;
    public const int EROFS = 30;
    public const int ENXIO = 6;
    public const int ENOSYS = 38;
    public const int EOPNOTSUPP = 95;

    /// <summary>The S_IFMT bits of st_mode and the two kinds of file the file driver serves.</summary>
    public const uint S_IFMT = 0xF000;
    public const uint S_IFREG = 0x8000;
    public const uint S_IFBLK = 0x6000;
    public const uint S_IFCHR = 0x2000;

    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(nint fd, long offset, int whence);

    [LibraryImport(Lib, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(nint fd);

    /// <summary>sync_file_range: start writeback of the range's dirty pages without waiting for it.</summary>
    public const uint SYNC_FILE_RANGE_WRITE = 0x2;

    [LibraryImport(Lib, EntryPoint = "sync_file_range", SetLastError = true)]
    public static partial int SyncFileRange(nint fd, long offset, long length, uint flags);

    [LibraryImport(Lib, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(nint fd, int mode, long offset, long length);

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int FTruncate(nint fd, long length);

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int FcntlLock(nint fd, int command, Flock* lockDescription);

    /// <summary>struct stat is 144 bytes on x86_64 and 128 on aarch64; the buffer covers both.</summary>
    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    public static partial int FStat(nint fd, byte* statBuffer);

    [LibraryImport(Lib, EntryPoint = "preadv2", SetLastError = true)]
    public static partial nint PReadV2(nint fd, IoVec* iov, int count, long offset, int flags);

    [LibraryImport(Lib, EntryPoint = "pwritev2", SetLastError = true)]
    public static partial nint PWriteV2(nint fd, IoVec* iov, int count, long offset, int flags);

    [LibraryImport(Lib, EntryPoint = "pread", SetLastError = true)]
    public static partial nint PRead(nint fd, byte* buffer, nuint count, long offset);

    /// <summary>The S_IFMT bits of the file behind <paramref name="fd"/>, or -errno.</summary>
    public static long FileType(nint fd)
    {
        var stat = stackalloc byte[256];
        if (FStat(fd, stat) != 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        // st_mode follows st_dev, st_ino and (on x86_64 only) a 64-bit st_nlink.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        return *(uint*)(stat + modeOffset) & S_IFMT;
    }

    /// <summary>The bytes the file behind <paramref name="fd"/> occupies on disk (st_blocks × 512), or -errno.</summary>
    public static long AllocatedBytes(nint fd)
    {
        var stat = stackalloc byte[256];
        if (FStat(fd, stat) != 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        // st_blocks is at byte 64 in both x86_64's and the generic (aarch64) struct stat.
        return *(long*)(stat + 64) * 512;
    }

    [LibraryImport(Lib, EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint PWrite(nint fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(nint fd, nuint request, void* argument);

    private const nuint FsIocGetFlags = 0x80086601, FsIocSetFlags = 0x40086602;
    private const nuint FsIocFsGetXattr = 0x801c581f, FsIocFsSetXattr = 0x401c5820;
    private const int FsNoCowFlag = 0x00800000;
    private const uint FsXflagExtSize = 0x800;

    /// <summary>Sets the no-copy-on-write attribute (btrfs) on an empty file; 0 or -errno.</summary>
    public static int SetNoCow(nint fd)
    {
        int flags;
        if (Ioctl(fd, FsIocGetFlags, &flags) != 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        flags |= FsNoCowFlag;
        return Ioctl(fd, FsIocSetFlags, &flags) == 0 ? 0 : -Marshal.GetLastPInvokeError();
    }

    /// <summary>Sets the file's extent size hint (XFS's struct fsxattr fsx_extsize); 0 or -errno.</summary>
    public static int SetExtentSizeHint(nint fd, uint hint)
    {
        // struct fsxattr: xflags, extsize, nextents, projid, cowextsize, 8 bytes of padding.
        var attr = stackalloc uint[7];
        if (Ioctl(fd, FsIocFsGetXattr, attr) != 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        attr[0] |= FsXflagExtSize;
        attr[1] = hint;
        return Ioctl(fd, FsIocFsSetXattr, attr) == 0 ? 0 : -Marshal.GetLastPInvokeError();
    }

    public const int ECANCELED = 125;

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x01;
    public const int MAP_POPULATE = 0x08000;

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial void* MMap(void* address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int MUnmap(void* address, nuint length);

    /// <summary>
    /// syscall(2) for calls glibc has no wrapper for (io_uring). Every argument is passed as a
    /// 64-bit integer, which is how the kernel takes them on x86_64 and aarch64.
    /// </summary>
    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    /// <summary>cachestat(2) (Linux 6.5): x86_64 and aarch64 share the number.</summary>
    private const long SysCachestat = 451;

    /// <summary>
    /// How many pages of the file's [offset, offset+length) are in the page cache (cachestat(2)), or
    /// -errno: -ENOSYS on a kernel before 6.5.
    /// </summary>
    public static long CachedPages(nint fd, long offset, long length)
    {
        // struct cachestat_range { u64 off, len; }; struct cachestat { u64 nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; }
        var range = stackalloc long[2] { offset, length };
        var stat = stackalloc long[5];
        var r = Syscall(SysCachestat, fd, (long)range, (long)stat, 0, 0, 0);
        return r < 0 ? -Marshal.GetLastPInvokeError() : stat[0];
    }

    /// <summary>The text of an errno value, as strerror(3) gives it.</summary>
    public static string StrError(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
