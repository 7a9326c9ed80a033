using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Native;
using Microsoft.Win32.SafeHandles;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// QEMU's file-posix drivers: 'file' for regular files and 'host_device' for block (or character)
/// devices. Options and error messages follow QEMU 7.2's BlockdevOptionsFile.
/// </summary>
internal partial class FileDriver : IBlockDriver
{
    private static readonly Dictionary<string, int> AioValues = new() { ["threads"] = 0, ["native"] = 1, ["io_uring"] = 2 };
    private static readonly Dictionary<string, int> LockingValues = new() { ["auto"] = 0, ["on"] = 1, ["off"] = 2 };

    private readonly bool _hostDevice;

    private protected FileDriver(bool hostDevice)
    {
        _hostDevice = hostDevice;
    }

    public static FileDriver File { get; } = new RegularFileDriver();

    public static FileDriver HostDevice { get; } = new(hostDevice: true);

    public string Name => _hostDevice ? "host_device" : "file";

    public ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var fileName = options.RequireString("filename");

        // aio picks QEMU's submission engine (a thread pool, Linux AIO or io_uring) and aio-max-batch
        // its batch size. With O_DIRECT, threads keeps the I/O threads and native or io_uring take
        // the shared io_uring (Linux AIO gains nothing over it); buffered requests are served from
        // the page cache inline whatever the engine, with the same results. aio=native still
        // needs O_DIRECT, as in QEMU.
        var aio = options.GetEnum("aio", AioValues) ?? 0;
        options.GetInt("aio-max-batch");
        var locking = options.GetEnum("locking", LockingValues) ?? 0;

        // Both concern an incoming migration (dropping the page cache when the image is taken over),
        // which a storage daemon never receives.
        options.GetBool("drop-cache");
        options.GetBool("x-check-cache-dropped");

        // No pr-manager object can be created here (--object pr-manager-helper is refused), so any id is unknown.
        if (options.GetString("pr-manager") is { } prManager)
        {
            throw BlockException.Invalid($"No persistent reservation manager with id '{prManager}'");
        }

        if (aio == 1 && !context.Cache.Direct)
        {
            throw BlockException.Invalid("aio=native was specified, but it requires cache.direct=on, which was not specified.");
        }

        var readOnly = context.ReadOnly;
        var fd = OpenFd(fileName, readOnly, context.Cache.Direct, out var errno);
        if (fd < 0 && !readOnly && context.AutoReadOnly && errno is LibC.EACCES or LibC.EROFS)
        {
            readOnly = true;
            fd = OpenFd(fileName, readOnly, context.Cache.Direct, out errno);
        }

        if (fd < 0)
        {
            throw new BlockException((Errno)errno, $"Could not open '{fileName}': {LibC.StrError(errno)}");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var isRegular = CheckFileType(handle, fileName);
            var locked = locking != 2 && ImageLock.IsSupported(handle);
            if (!locked && locking == 1)
            {
                throw BlockException.NotSupported("Failed to lock byte 100: OFD locks are not supported");
            }

            if (locked)
            {
                LockImage(handle, fileName, readOnly, context.ForceShare);
            }

            BlockNode node = new FileNode(context.NodeName, Name, fileName, handle, readOnly, isRegular, context.Cache, locked, context.ForceShare, useRing: aio != 0);
            return ValueTask.FromResult(node);
        }
        catch
        {
            // A refused open may have taken some of the bytes before it found the conflict.
            ImageLock.Release(handle);
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The permissions a node of ours takes: a writer reads, writes and resizes and lets nobody else
    /// write or resize; a reader lets nobody write; force-share lets everyone do everything.
    /// </summary>
    internal static void LockImage(SafeFileHandle handle, string fileName, bool readOnly, bool forceShare)
    {
        var held = readOnly
            ? BlockPermissions.ConsistentRead
            : BlockPermissions.ConsistentRead | BlockPermissions.Write | BlockPermissions.Resize;
        var shared = forceShare
            ? BlockPermissions.All
            : BlockPermissions.All & ~(BlockPermissions.Write | BlockPermissions.Resize);
        ImageLock.Apply(handle, held, shared, fileName);
    }

    internal static int OpenFd(string fileName, bool readOnly, bool direct, out int errno)
    {
        var flags = LibC.O_CLOEXEC | (readOnly ? LibC.O_RDONLY : LibC.O_RDWR) | (direct ? LibC.O_DIRECT : 0);
        int fd;
        do
        {
            fd = LibC.Open(fileName, flags, 0);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (fd < 0 && errno == LibC.EINTR);

        return fd;
    }

    /// <summary>Refuses what QEMU refuses; returns whether the file is a regular file.</summary>
    private bool CheckFileType(SafeFileHandle handle, string fileName)
    {
        var type = LibC.FileType(handle.DangerousGetHandle());
        if (type < 0)
        {
            var errno = (int)-type;
            throw new BlockException((Errno)errno, $"Could not stat file: {LibC.StrError(errno)}");
        }

        var isRegular = type == LibC.S_IFREG;
        if (!_hostDevice && !isRegular)
        {
            throw BlockException.Invalid($"'file' driver requires '{fileName}' to be a regular file");
        }

        if (_hostDevice && type != LibC.S_IFBLK && type != LibC.S_IFCHR)
        {
            throw BlockException.Invalid($"'host_device' driver requires '{fileName}' to be either a character or block device");
        }

        return isRegular;
    }
}
