using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Fuse.Native;
using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse;

/// <summary>
/// A block node exposed as one regular file: the FUSE file system is mounted over an existing
/// regular file (the mount point), like qemu-storage-daemon's <c>--export type=fuse</c>.
/// Requests are received by dedicated threads and served asynchronously and concurrently.
/// </summary>
public sealed partial class FuseExport : IAsyncDisposable
{
    /// <summary>ENOTCONN: what stat says about a FUSE mount whose daemon died.</summary>
    private const Errno NotConnected = (Errno)Libc.ENOTCONN;

    private const string FuseDevice = "/dev/fuse";

    private static readonly HashSet<string> s_mountPoints = new(StringComparer.Ordinal);

    private readonly FuseOperations _operations;
    private readonly ILogger? _logger;

    private FuseExport(FuseExportOptions options, string mountPoint, FuseOperations operations, ILogger? logger)
    {
        Id = options.Id;
        Node = options.Node;
        MountPoint = mountPoint;
        _operations = operations;
        _logger = logger;
    }

    public string Id { get; }

    public BlockNode Node { get; }

    /// <summary>The absolute path of the mounted file.</summary>
    public string MountPoint { get; }

    public bool Writable => _operations.Writable;

    public bool Growable => _operations.Growable;

    /// <summary>Whether the mount ended up with allow_other (decided at mount time for 'auto').</summary>
    public bool AllowOther => _operations.AllowOther;

    /// <summary>
    /// Checks the mount point, mounts, and starts serving. Fails with a <see cref="BlockException"/>
    /// naming the problem: a missing or non-regular mount point, a stale or live FUSE mount on it,
    /// no /dev/fuse, a read-only node exported writable, or libfuse's own mount error.
    /// </summary>
    public static FuseExport Mount(FuseExportOptions options, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            throw BlockException.NotSupported("FUSE exports are only supported on x86_64 Linux");
        }

        if (options.Writable && options.Node.IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Block node '{options.Node.NodeName}' is read-only");
        }

        var mountPoint = Path.GetFullPath(options.MountPoint);
        lock (s_mountPoints)
        {
            // Checked before stat: stat on our own mount would wait for this process to answer.
            if (!s_mountPoints.Add(mountPoint))
            {
                throw new BlockException(Errno.EEXIST, $"There already is a FUSE export on '{options.MountPoint}'");
            }
        }

        try
        {
            CheckMountPoint(options.MountPoint, mountPoint);
            var operations = new FuseOperations(options.Node, options.Writable, options.Growable, NativeReplies.Instance, logger);
            var export = new FuseExport(options, mountPoint, operations, logger);
            export.Start(options);
            if (logger is not null)
            {
                FuseLog.Mounted(logger, export.Id, export.Node.NodeName, mountPoint, export.Writable, export.Growable, export.AllowOther);
            }

            return export;
        }
        catch
        {
            lock (s_mountPoints)
            {
                s_mountPoints.Remove(mountPoint);
            }

            throw;
        }
    }

    private static unsafe void CheckMountPoint(string given, string mountPoint)
    {
        Stat st;
        if (Libc.StatPath(mountPoint, &st) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.ENOTCONN)
            {
                throw new BlockException(NotConnected, $"mountpoint {given} is a stale FUSE mount; clear it with fusermount3 -u {given}");
            }

            throw new BlockException((Errno)errno, $"Failed to stat '{given}': {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        if (!st.IsRegularFile)
        {
            throw new BlockException(Errno.EINVAL, $"'{given}' is not a regular file");
        }

        if (MountInfo.FindCurrent(mountPoint) is { IsFuse: true })
        {
            throw new BlockException(Errno.EBUSY, $"mountpoint {given} is already a FUSE mount; unmount it first with fusermount3 -u {given}");
        }

        if (!File.Exists(FuseDevice))
        {
            throw new BlockException(Errno.ENOENT, $"FUSE is not available: {FuseDevice} does not exist (is the fuse kernel module loaded?)");
        }
    }

    private static void Unregister(string mountPoint)
    {
        lock (s_mountPoints)
        {
            s_mountPoints.Remove(mountPoint);
        }
    }

    public override string ToString() => $"fuse:{Id}:{MountPoint}";
}
