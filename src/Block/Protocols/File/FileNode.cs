using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;
using Microsoft.Win32.SafeHandles;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// A node over a regular file or a block device, QEMU's file-posix. Reads and writes are served
/// inline from the page cache when possible, otherwise by the .NET thread pool (buffered) or, with
/// O_DIRECT, by the shared <see cref="IoUring"/> (aio=io_uring or aio=native) or
/// <see cref="BlockingIoPool"/> (aio=threads, or where the kernel has no io_uring); zeroing,
/// discard, block status, flush and resize go through libc.
/// With O_DIRECT, buffers whose address is not aligned are bounced through aligned memory.
/// </summary>
internal sealed partial class FileNode : BlockNode, IFileExtentSource
{
    private const int DirectMemoryAlignment = 4096;

    private readonly string _fileName;
    private readonly bool _isRegular;
    private readonly bool _direct;
    private readonly bool _noFlush;
    private readonly bool _locked;
    private readonly bool _forceShare;
    private readonly WriteBehind? _writeBehind;

    /// <summary>With O_DIRECT and an aio engine other than threads: the ring reads, writes and flushes go through.</summary>
    private readonly IoUring? _ring;
    private SafeFileHandle _handle;

    /// <summary>The last data run block status found; forgotten around punches, zeroing and resizes.</summary>
    private readonly DataRunCache _knownData = new();

    /// <summary>The holes block status found; only while the image locks keep other writers out.</summary>
    private readonly HoleRunCache? _knownHoles;

    /// <summary>Whether FUA writes use RWF_DSYNC; cleared when the kernel or file system refuses the flag.</summary>
    private bool _nativeFua = true;

    public FileNode(
        string nodeName, string driverName, string fileName, SafeFileHandle handle, bool readOnly, bool isRegular, CacheOptions cache,
        bool locked, bool forceShare, bool useRing)
        : base(nodeName, readOnly)
    {
        DriverName = driverName;
        _fileName = fileName;
        _handle = handle;
        _isRegular = isRegular;
        _direct = cache.Direct;
        _noFlush = cache.NoFlush;
        _locked = locked;
        _forceShare = forceShare;
        _knownHoles = locked && !forceShare ? new HoleRunCache() : null;
        _ring = _direct && useRing ? IoUring.Shared : null;

        // Early writeback shortens the flush that ends a stream; without flushes (cache.no-flush)
        // or with O_DIRECT there is nothing for it to shorten.
        _writeBehind = isRegular && !_direct && !_noFlush ? WriteBehind.ForFile(() => Volatile.Read(ref _handle)) : null;
        Length = QueryLength();
        Capabilities = BlockCapabilities.Zeroing with { Fua = true, Truncate = isRegular };
        if (_direct)
        {
            Limits = BlockLimits.Default with
            {
                RequestAlignment = ProbeRequestAlignment(),
                MemoryAlignment = DirectMemoryAlignment,
            };
        }
    }

    public override string DriverName { get; }

    public override string FileName => _fileName;

    /// <summary>The descriptor at open, before any request can run; requests take a <see cref="Lease"/>.</summary>
    private nint Fd => _handle.DangerousGetHandle();

    private DescriptorLease Lease() => DescriptorLease.Take(ref _handle);

    private long QueryLength()
    {
        var end = LibC.LSeek(Fd, 0, LibC.SEEK_END);
        return end >= 0 ? end : throw Failure("Could not determine the length of", Marshal.GetLastPInvokeError());
    }

    /// <summary>
    /// The smallest read size O_DIRECT accepts, found the way QEMU does: try 512, 1024, 2048 and 4096
    /// byte reads into aligned memory at offset 0; 4096 if none works.
    /// </summary>
    private unsafe int ProbeRequestAlignment()
    {
        using var probe = new AlignedBuffer(DirectMemoryAlignment, DirectMemoryAlignment);
        using var pin = probe.Pin();
        for (var size = 512; size < DirectMemoryAlignment; size *= 2)
        {
            if (LibC.PRead(Fd, (byte*)pin.Pointer, (nuint)size, 0) >= 0)
            {
                return size;
            }
        }

        return DirectMemoryAlignment;
    }

    /// <summary>
    /// Reopens the file in the new mode, as QEMU's file-posix does: a backing file opened read-only
    /// gets a read-write descriptor when a job makes it writable (commit into it), and back. The new
    /// descriptor takes the image locks of the new mode; when another process holds a conflicting
    /// lock, the old descriptor keeps its locks and the node stays as it was.
    /// </summary>
    protected override ValueTask ReopenCoreAsync(bool readOnly)
    {
        var fd = FileDriver.OpenFd(_fileName, readOnly, _direct, out var errno);
        if (fd < 0)
        {
            throw Failure("Could not reopen", errno);
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            if (_locked)
            {
                // Two descriptors of ours are two open file descriptions whose locks conflict:
                // the old one lets go before the new one takes the new mode's bytes.
                ImageLock.Apply(_handle, BlockPermissions.None, BlockPermissions.All, _fileName);
                try
                {
                    FileDriver.LockImage(handle, _fileName, readOnly, _forceShare);
                }
                catch
                {
                    ImageLock.Apply(handle, BlockPermissions.None, BlockPermissions.All, _fileName);
                    FileDriver.LockImage(_handle, _fileName, IsReadOnly, _forceShare);
                    throw;
                }
            }
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        // Requests still using the old descriptor hold a lease: it closes when the last one ends.
        var old = Interlocked.Exchange(ref _handle, handle);
        old.Dispose();
        return ValueTask.CompletedTask;
    }

    private BlockException Failure(string what, int errno) =>
        new((Errno)errno, $"{what} '{_fileName}': {LibC.StrError(errno)}");

    /// <summary>Write-behind from the first write on (see <see cref="WriteBehind"/>).</summary>
    protected override void OnFlushedStreamExpected() => _writeBehind?.Arm();

    /// <summary>Whether write-behind has started counting writes (for tests).</summary>
    internal bool WritesBehind => _writeBehind?.Armed ?? false;

    protected override ValueTask DisposeCoreAsync()
    {
        if (_locked)
        {
            ImageLock.Release(_handle);
        }

        _handle.Dispose();
        return ValueTask.CompletedTask;
    }
}
