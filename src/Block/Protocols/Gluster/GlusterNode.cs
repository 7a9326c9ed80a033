using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.Gluster;

/// <summary>
/// A file on a GlusterFS volume. Reads, writes, discards, zero writes and flushes are libgfapi
/// asynchronous calls, any number in flight except reads and writes above 128 KiB, two at a time
/// (<see cref="EnterAsync"/>); block status asks the brick with SEEK_DATA and SEEK_HOLE, as QEMU does.
/// </summary>
internal sealed class GlusterNode : BlockNode, IImageInfoSource
{
    private const int ENXIO = 6;

    /// <summary>The largest request libgfapi copies through a buffer from malloc (see <see cref="EnterAsync"/>).</summary>
    internal const int LargeRequest = 128 * 1024;

    private readonly string _fileName;
    private nint _fs;
    private nint _fd;

    /// <summary>
    /// The last data range SEEK_DATA/SEEK_HOLE found, so that reads (which ask block status for holes)
    /// do not cost two more round trips to the brick each.
    /// </summary>
    private readonly DataRunCache _knownData = new();

    /// <summary>Reads and writes above <see cref="LargeRequest"/> in flight at once (see <see cref="EnterAsync"/>).</summary>
    internal const int LargeInFlight = 2;

    private readonly SemaphoreSlim _large = new(LargeInFlight);

    private GlusterNode(string nodeName, bool readOnly, nint fs, nint fd, long size, string fileName)
        : base(nodeName, readOnly)
    {
        _fs = fs;
        _fd = fd;
        _fileName = fileName;
        Length = size;
        Capabilities = new BlockCapabilities(WriteZeroes: true, Truncate: true);
    }

    public override string DriverName => "gluster";

    public override bool IsRemote => true;

    public override string FileName => _fileName;

    public BlockDriverInfo? DriverInfo => null;

    /// <summary>Connects to the volume; blocking. The caller owns the handle (glfs_fini).</summary>
    private static nint Connect(GlusterLocation location)
    {
        MallocTuning.KeepIoBuffers();
        var (volume, path, servers) = (location.Volume, location.Path, location.Servers);
        var fs = LibGfapi.glfs_new(volume);
        if (fs == 0)
        {
            throw new BlockException((Errno)Marshal.GetLastPInvokeError(), $"Gluster connection for volume {volume}, path {path} failed to connect");
        }

        try
        {
            foreach (var (transport, host, port) in servers)
            {
                if (LibGfapi.glfs_set_volfile_server(fs, transport, host, port) < 0)
                {
                    throw Connect(volume, path, servers);
                }
            }

            if (LibGfapi.glfs_set_logging(fs, location.LogFile, location.Debug) < 0 || LibGfapi.glfs_init(fs) < 0)
            {
                throw Connect(volume, path, servers);
            }

            var connected = fs;
            fs = 0;
            return connected;
        }
        finally
        {
            if (fs != 0)
            {
                _ = LibGfapi.glfs_fini(fs);
            }
        }
    }

    /// <summary>Connects to the volume and opens the file; blocking, so the driver runs it on the thread pool.</summary>
    public static GlusterNode Open(BlockOpenContext context, GlusterLocation location)
    {
        var path = location.Path;
        var fs = Connect(location);
        try
        {
            var flags = (context.ReadOnly ? LibC.O_RDONLY : LibC.O_RDWR) | (context.Cache.Direct ? LibC.O_DIRECT : 0);
            var fd = LibGfapi.glfs_open(fs, path, flags);
            if (fd == 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new BlockException((Errno)errno, $"Could not open '{path}': {LibC.StrError(errno)}");
            }

            var size = LibGfapi.glfs_lseek(fd, 0, LibC.SEEK_END);
            if (size < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                _ = LibGfapi.glfs_close(fd);
                throw new BlockException((Errno)errno, $"Could not get the size of '{path}': {LibC.StrError(errno)}");
            }

            var node = new GlusterNode(context.NodeName, context.ReadOnly, fs, fd, size, Describe(location.Volume, path, location.Servers[0]));
            fs = 0;
            return node;
        }
        finally
        {
            if (fs != 0)
            {
                _ = LibGfapi.glfs_fini(fs);
            }
        }
    }

    /// <summary>QEMU's qemu_gluster_co_create and qemu_gluster_do_truncate from an empty file; blocking.</summary>
    public static void Create(GlusterLocation location, long size, string prealloc)
    {
        var fs = Connect(location);
        try
        {
            var fd = LibGfapi.glfs_creat(fs, location.Path, LibC.O_WRONLY | LibC.O_CREAT | LibC.O_TRUNC, 0x180);
            if (fd == 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new BlockException((Errno)errno, $"Could not create '{location.Path}': {LibC.StrError(errno)}");
            }

            try
            {
                if (prealloc == "falloc")
                {
                    Sized(size == 0 || LibGfapi.glfs_fallocate(fd, 0, 0, (nuint)size) == 0, "Could not preallocate data");
                }
                else
                {
                    Sized(LibGfapi.glfs_ftruncate(fd, size, 0, 0) == 0, "Could not resize file");
                    if (prealloc == "full" && size > 0)
                    {
                        Sized(LibGfapi.glfs_zerofill(fd, 0, size) == 0, "Could not zerofill the new area");
                    }
                }
            }
            finally
            {
                _ = LibGfapi.glfs_close(fd);
            }
        }
        finally
        {
            _ = LibGfapi.glfs_fini(fs);
        }
    }

    private static void Sized(bool done, string message)
    {
        if (!done)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new BlockException((Errno)errno, $"{message}: {LibC.StrError(errno)}");
        }
    }

    private static BlockException Connect(string volume, string path, IReadOnlyList<(string Transport, string Host, int Port)> servers)
    {
        var errno = Marshal.GetLastPInvokeError();
        var (transport, host, port) = servers[0];
        var where = transport == "unix" ? $"failed on socket {host} " : $"failed on host {host} and port {port} ";
        return new BlockException(errno > 0 ? (Errno)errno : Errno.EIO,
            $"Gluster connection for volume {volume}, path {path} failed to connect",
            hint: where + "Please refer to gluster logs for more info");
    }

    private static string Describe(string volume, string path, (string Transport, string Host, int Port) server) =>
        server.Transport == "unix"
            ? $"gluster+unix:///{volume}/{path}?socket={server.Host}"
            : $"gluster://{(server.Host.Contains(':', StringComparison.Ordinal) ? $"[{server.Host}]" : server.Host)}:{server.Port}/{volume}/{path}";

    private static void Check(long r)
    {
        if (r < 0)
        {
            throw new BlockException((Errno)(-r), LibC.StrError((int)-r));
        }
    }

    /// <summary>A short read (the end of the file) leaves zeroes.</summary>
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        using (await EnterAsync(buffer.Length).ConfigureAwait(false))
        {
            ZeroTail(buffer, await GlusterOp.Read(_fd, offset, buffer.Length, buffer.Pin()).ConfigureAwait(false));
        }
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        using (await EnterAsync(buffer.Length).ConfigureAwait(false))
        {
            Written(await GlusterOp.Write(_fd, offset, buffer.Length, buffer.Pin()).ConfigureAwait(false), buffer.Length);
        }
    }

    /// <summary>
    /// Waits, for a read or write above <see cref="LargeRequest"/>, until fewer than
    /// <see cref="LargeInFlight"/> of those are in flight on the node. libgfapi copies every request
    /// through one of its I/O buffers: up to 128 KiB one from malloc, above that one from pools of
    /// mapped regions (eight buffers of 256 KiB, two of 1 MiB) that it maps afresh and unmaps whenever
    /// one fills up and another empties. With nbdcopy's 256 KiB requests all in flight (up to 256 over
    /// four connections) it did that a few hundred times a GiB, and the daemon spent more CPU faulting
    /// those pages in than copying; cut into 128 KiB pieces the requests doubled the brick's calls.
    /// Two at a time, whole, it maps no region afresh. A 1 GiB nbdcopy read then write (as in
    /// scripts/bench) took 1.8-2.15 s and 1.65-2.1 s this way, 2.15-2.65 s and 2.2-2.45 s in pieces, and
    /// 2.25-2.75 s and 1.85-2.9 s in qemu-storage-daemon. One at a time was as fast here; the second
    /// keeps a request on the wire while the next is copied, for a brick further away.
    /// </summary>
    private async ValueTask<LargeSlot> EnterAsync(int length)
    {
        if (length <= LargeRequest)
        {
            return default;
        }

        await _large.WaitAsync().ConfigureAwait(false);
        return new LargeSlot(_large);
    }

    /// <summary>A place among the large requests in flight, given back at the end of the request.</summary>
    private readonly struct LargeSlot(SemaphoreSlim? gate) : IDisposable
    {
        public void Dispose() => gate?.Release();
    }

    private static void ZeroTail(Memory<byte> buffer, long n)
    {
        Check(n);
        if (n < buffer.Length)
        {
            buffer.Span[(int)n..].Clear();
        }
    }

    private static void Written(long n, int length)
    {
        Check(n);
        if (n != length)
        {
            throw BlockException.Io(LibC.StrError((int)Errno.EIO));
        }
    }

    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        _knownData.Forget();
        try
        {
            Check(await GlusterOp.WriteZeroes(_fd, offset, length).ConfigureAwait(false));
        }
        finally
        {
            _knownData.Forget();
        }
    }

    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        _knownData.Forget();
        try
        {
            Check(await GlusterOp.Discard(_fd, offset, length).ConfigureAwait(false));
        }
        finally
        {
            _knownData.Forget();
        }
    }

    protected override async ValueTask FlushCoreAsync() =>
        Check(await GlusterOp.Flush(_fd).ConfigureAwait(false));

    /// <summary>
    /// QEMU's find_allocation: the next data at or after <paramref name="offset"/>; when the offset
    /// is in data, it lasts to the next hole. A brick that cannot tell (EINVAL, ENOTSUP) makes it all data.
    /// A range inside the last data range found is answered without asking the brick.
    /// </summary>
    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var data = new BlockStatus(length, BlockStatusFlags.Data | BlockStatusFlags.Allocated);
        var end = offset + length;
        var knownEnd = _knownData.EndOfRunAt(offset);
        if (knownEnd >= 0)
        {
            return ValueTask.FromResult(new BlockStatus(Math.Min(knownEnd, end) - offset, BlockStatusFlags.Data | BlockStatusFlags.Allocated));
        }

        var generation = _knownData.Generation;
        var nextData = LibGfapi.glfs_lseek(_fd, offset, LibC.SEEK_DATA);
        if (nextData < 0)
        {
            return ValueTask.FromResult(Marshal.GetLastPInvokeError() == ENXIO
                ? new BlockStatus(length, BlockStatusFlags.Zero | BlockStatusFlags.Allocated)
                : data);
        }

        if (nextData > offset)
        {
            return ValueTask.FromResult(new BlockStatus(Math.Min(nextData, end) - offset, BlockStatusFlags.Zero | BlockStatusFlags.Allocated));
        }

        var nextHole = LibGfapi.glfs_lseek(_fd, offset, LibC.SEEK_HOLE);
        if (nextHole <= offset)
        {
            return ValueTask.FromResult(data);
        }

        _knownData.Remember(offset, nextHole, generation);
        return ValueTask.FromResult(new BlockStatus(Math.Min(nextHole, end) - offset, BlockStatusFlags.Data | BlockStatusFlags.Allocated));
    }

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        _knownData.Forget();
        var (r, errno) = await Task.Run(() => (LibGfapi.glfs_ftruncate(_fd, length, 0, 0), Marshal.GetLastPInvokeError())).ConfigureAwait(false);
        _knownData.Forget();
        if (r < 0)
        {
            throw new BlockException((Errno)errno, $"Failed to truncate file: {LibC.StrError(errno)}");
        }

        Length = length;
    }

    /// <summary>Closing the volume waits for libgfapi's own threads (seconds), so it runs on the thread pool.</summary>
    protected override async ValueTask DisposeCoreAsync()
    {
        var (fd, fs) = (_fd, _fs);
        (_fd, _fs) = (0, 0);
        await Task.Run(() =>
        {
            if (fd != 0)
            {
                _ = LibGfapi.glfs_close(fd);
            }

            if (fs != 0)
            {
                _ = LibGfapi.glfs_fini(fs);
            }
        }).ConfigureAwait(false);
    }
}
