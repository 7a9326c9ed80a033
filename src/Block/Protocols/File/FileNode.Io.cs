using System.Buffers;
using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// The I/O of a file node. The engine guarantees aligned, in-bounds, non-empty requests. Every
/// request holds a <see cref="DescriptorLease"/> on the descriptor it uses from start to end.
/// </summary>
internal sealed partial class FileNode
{
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        using var fd = Lease();
        if (!_direct)
        {
            var n = TryReadNoWait(fd.Fd, offset, buffer.Span);
            if (n == buffer.Length)
            {
                return;
            }

            if (n == 0)
            {
                buffer.Span.Clear();
                return;
            }

            n = Math.Max(n, 0);
            await ReadFullyAsync(fd, offset + n, buffer[n..]).ConfigureAwait(false);
            return;
        }

        using var pin = buffer.Pin();
        if (IsDirectAligned(pin))
        {
            await ReadFullyAsync(fd, offset, buffer).ConfigureAwait(false);
            return;
        }

        using var bounce = new AlignedBuffer(buffer.Length, DirectMemoryAlignment);
        await ReadFullyAsync(fd, offset, bounce.Memory).ConfigureAwait(false);
        bounce.Memory.Span.CopyTo(buffer.Span);
    }

    /// <summary>Reads until the buffer is full; what lies past the end of the file reads as zeroes.</summary>
    private async ValueTask ReadFullyAsync(DescriptorLease fd, long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var n = await PReadAsync(fd, offset, buffer).ConfigureAwait(false);

            // A short read that leaves O_DIRECT alignment can only be the end of the file; reading on
            // from an unaligned offset would fail with EINVAL.
            if (n == 0 || (_direct && n % Limits.RequestAlignment != 0))
            {
                buffer.Span[n..].Clear();
                return;
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        try
        {
            using var fd = Lease();
            if ((flags & WriteFlags.Fua) != 0 && !_noFlush)
            {
                _writeBehind?.Arm();
                await WriteFuaAsync(fd, offset, buffer).ConfigureAwait(false);
                return;
            }

            if (_direct)
            {
                using var pin = buffer.Pin();
                if (!IsDirectAligned(pin))
                {
                    using var bounce = new AlignedBuffer(buffer.Length, DirectMemoryAlignment);
                    buffer.Span.CopyTo(bounce.Memory.Span);
                    await WriteFullyAsync(fd, offset, bounce.Memory).ConfigureAwait(false);
                    return;
                }
            }

            else
            {
                var n = TryWriteNoWait(fd.Fd, offset, buffer.Span);
                if (n == buffer.Length)
                {
                    _writeBehind?.Wrote(offset, n);
                    return;
                }

                if (n < 0 && !_noWaitWrites)
                {
                    // Without RWF_NOWAIT (ext4 buffered writes), a buffered write is a copy into the page
                    // cache: doing it on the calling thread saves a thread hop per request. With NBD
                    // requests running on the socket threads this measured about a third less CPU for
                    // nbdcopy's 256 KiB sequential writes and a fifth of the context switches. The cost:
                    // when the kernel throttles a writer for dirty pages, the calling thread waits.
                    WriteInline(fd, offset, buffer.Span);
                    _writeBehind?.Wrote(offset, buffer.Length);
                    return;
                }

                n = Math.Max(n, 0);
                await WriteFullyAsync(fd, offset + n, buffer[n..]).ConfigureAwait(false);
                _writeBehind?.Wrote(offset, buffer.Length);
                return;
            }

            await WriteFullyAsync(fd, offset, buffer).ConfigureAwait(false);
        }
        finally
        {
            // Whatever landed may have filled a hole.
            _knownHoles?.Wrote();
        }
    }

    /// <summary>
    /// A write flagged FUA, as QEMU 10's file-posix does it: one pwritev2 with RWF_DSYNC, which puts
    /// this write's range on stable storage, instead of the write and an fdatasync of the whole file.
    /// It waits for the device, so it runs on the ring or the I/O threads, buffered or not, unless the
    /// caller may block (<see cref="BlockingAllowed"/>). Where the kernel or
    /// the file system has no RWF_DSYNC, the write is followed by fdatasync.
    /// </summary>
    private async ValueTask WriteFuaAsync(DescriptorLease fd, long offset, ReadOnlyMemory<byte> buffer)
    {
        AlignedBuffer? bounce = null;
        if (_direct)
        {
            using var pin = buffer.Pin();
            if (!IsDirectAligned(pin))
            {
                bounce = new AlignedBuffer(buffer.Length, DirectMemoryAlignment);
                buffer.Span.CopyTo(bounce.Memory.Span);
                buffer = bounce.Memory;
            }
        }

        using (bounce)
        {
            if (Volatile.Read(ref _nativeFua))
            {
                var n = await DeviceWriteAsync(fd, buffer, offset, LibC.RWF_DSYNC).ConfigureAwait(false);
                if (n >= 0)
                {
                    return;
                }

                if (!IsRwFlagUnsupported((int)-n))
                {
                    throw Failure("Could not write to", (int)-n);
                }

                Volatile.Write(ref _nativeFua, false);
            }

            await WriteFullyAsync(fd, offset, buffer).ConfigureAwait(false);
            await SyncAsync(fd).ConfigureAwait(false);
        }
    }

    private static void WriteInline(DescriptorLease fd, long offset, ReadOnlySpan<byte> buffer)
    {
        try
        {
            RandomAccess.Write(fd.Handle, buffer, offset);
        }
        catch (Exception e) when (e is not BlockException)
        {
            throw BlockException.From(e);
        }
    }

    /// <summary>
    /// One positional read. Direct I/O waits for the device, so it goes to the ring or to the
    /// dedicated I/O threads, where the queue depth becomes device concurrency; buffered I/O that missed the inline path goes
    /// to the .NET thread pool, whose few threads contend less on the inode lock than many would.
    /// </summary>
    private async ValueTask<int> PReadAsync(DescriptorLease fd, long offset, Memory<byte> buffer)
    {
        if (TryReadHere(fd, buffer.Span, offset, out var here))
        {
            return here >= 0 ? (int)here : throw Failure("Could not read from", (int)-here);
        }

        if (_direct)
        {
            var n = _ring is { } ring
                ? await ring.ReadAsync(fd.Fd, buffer, offset).ConfigureAwait(false)
                : await BlockingIoPool.Shared.ReadAsync(fd.Fd, buffer, offset).ConfigureAwait(false);
            return n >= 0 ? (int)n : throw Failure("Could not read from", (int)-n);
        }

        try
        {
            return await RandomAccess.ReadAsync(fd.Handle, buffer, offset).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not BlockException)
        {
            throw BlockException.From(e);
        }
    }

    /// <summary>Writes the whole buffer; dispatched like <see cref="PReadAsync"/>.</summary>
    private async ValueTask WriteFullyAsync(DescriptorLease fd, long offset, ReadOnlyMemory<byte> buffer)
    {
        long n;
        if (_direct)
        {
            n = await DeviceWriteAsync(fd, buffer, offset, 0).ConfigureAwait(false);
        }
        else if (!TryWriteHere(fd, buffer.Span, offset, 0, out n))
        {
            try
            {
                await RandomAccess.WriteAsync(fd.Handle, buffer, offset).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not BlockException)
            {
                throw BlockException.From(e);
            }

            return;
        }

        if (n < 0)
        {
            throw Failure("Could not write to", (int)-n);
        }
    }

    /// <summary>
    /// A write that may wait for the device: on the ring when the node has one, else on the I/O
    /// threads; the whole buffer (short writes continue) or -errno.
    /// </summary>
    private async ValueTask<long> DeviceWriteAsync(DescriptorLease fd, ReadOnlyMemory<byte> buffer, long offset, int rwFlags)
    {
        if (TryWriteHere(fd, buffer.Span, offset, rwFlags, out var here))
        {
            return here;
        }

        if (_ring is not { } ring)
        {
            return await BlockingIoPool.Shared.WriteAsync(fd.Fd, buffer, offset, rwFlags).ConfigureAwait(false);
        }

        var done = 0;
        while (done < buffer.Length)
        {
            var n = await ring.WriteAsync(fd.Fd, buffer[done..], offset + done, rwFlags).ConfigureAwait(false);
            if (n <= 0)
            {
                return n < 0 ? n : -LibC.EIO;
            }

            done += (int)n;
        }

        return done;
    }

    private static unsafe bool IsDirectAligned(in MemoryHandle pin) =>
        ((nint)pin.Pointer & (DirectMemoryAlignment - 1)) == 0;

    /// <summary>
    /// Punches a hole when the caller allows unmapping and the node has discard=unmap, otherwise
    /// zeroes the range in place; ENOTSUP (the engine then writes zero buffers) when the file
    /// system can do neither.
    /// </summary>
    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        if ((flags & ZeroFlags.MayUnmap) != 0 && DiscardUnmap &&
            await FAllocateAsync(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length).ConfigureAwait(false))
        {
            await SyncIfFuaAsync(flags).ConfigureAwait(false);
            return;
        }

        if (!await FAllocateAsync(LibC.FALLOC_FL_ZERO_RANGE, offset, length).ConfigureAwait(false))
        {
            throw BlockException.NotSupported($"Write zeroes not supported by '{_fileName}'");
        }

        await SyncIfFuaAsync(flags).ConfigureAwait(false);
    }

    /// <summary>FUA on a zero write: fallocate has no RWF_DSYNC, so the range is made stable with fdatasync (QEMU flushes after it too).</summary>
    private async ValueTask SyncIfFuaAsync(ZeroFlags flags)
    {
        if ((flags & ZeroFlags.Fua) != 0 && !_noFlush)
        {
            using var fd = Lease();
            await SyncAsync(fd).ConfigureAwait(false);
        }
    }

    /// <summary>Frees the range when discard=unmap; advisory, so a file system without hole punching is not an error.</summary>
    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        if (DiscardUnmap)
        {
            await FAllocateAsync(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length).ConfigureAwait(false);
        }
    }

    /// <summary>fallocate(2) off the caller's thread; false when the mode is not supported here.</summary>
    private async ValueTask<bool> FAllocateAsync(int mode, long offset, long length)
    {
        using var fd = Lease();
        _knownData.Forget();
        var errno = await Task.Run(() => LibC.FAllocate(fd.Fd, mode, offset, length) == 0 ? 0 : Marshal.GetLastPInvokeError()).ConfigureAwait(false);
        _knownData.Forget();
        _knownHoles?.Wrote();
        return errno switch
        {
            0 => true,
            LibC.EOPNOTSUPP => false,
            _ => throw Failure("Could not zero or discard a range of", errno),
        };
    }

    protected override async ValueTask FlushCoreAsync()
    {
        _writeBehind?.Arm();
        if (_noFlush)
        {
            return;
        }

        using var fd = Lease();
        await SyncAsync(fd).ConfigureAwait(false);
    }

    private async ValueTask SyncAsync(DescriptorLease fd)
    {
        if (!TrySyncHere(fd, out var errno))
        {
            errno = _ring is { } ring
                ? (int)-await ring.SyncAsync(fd.Fd).ConfigureAwait(false)
                : await Task.Run(() => LibC.FDataSync(fd.Fd) == 0 ? 0 : Marshal.GetLastPInvokeError()).ConfigureAwait(false);
        }

        if (errno != 0)
        {
            throw Failure("Could not flush", errno);
        }
    }

    /// <summary>
    /// Holes (SEEK_HOLE) read as zeroes, the rest is data; everything belongs to this layer. A query
    /// inside a data run found before is answered without a system call, and a query that starts in a
    /// hole looks up the data run after it, so walking a sparse file costs two seeks a data run. Walking
    /// it again costs none while no write came in between (the holes are kept too), else one (SEEK_DATA)
    /// a data run.
    /// </summary>
    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        const BlockStatusFlags data = BlockStatusFlags.Data | BlockStatusFlags.Allocated;
        const BlockStatusFlags hole = BlockStatusFlags.Zero | BlockStatusFlags.Allocated;

        var knownEnd = _knownData.EndOfRunAt(offset);
        if (knownEnd >= 0)
        {
            return ValueTask.FromResult(new BlockStatus(Math.Min(knownEnd - offset, length), data));
        }

        var holeEnd = _knownHoles?.EndOfHoleAt(offset) ?? -1;
        if (holeEnd >= 0)
        {
            return ValueTask.FromResult(new BlockStatus(Math.Min(holeEnd - offset, length), hole));
        }

        var writes = _knownHoles?.Writes ?? 0;
        var generation = _knownData.Generation;
        using var fd = Lease();
        var dataStart = LibC.LSeek(fd.Fd, offset, LibC.SEEK_DATA);
        if (dataStart < 0)
        {
            // ENXIO: no data from offset to the end of the file; anything else: no SEEK_DATA here.
            if (Marshal.GetLastPInvokeError() != LibC.ENXIO)
            {
                return ValueTask.FromResult(new BlockStatus(length, data));
            }

            _knownHoles?.Remember(offset, Math.Max(offset + length, Length), writes);
            return ValueTask.FromResult(new BlockStatus(length, hole));
        }

        // With O_DIRECT an answer stays a multiple of the alignment: a partial block counts as data.
        // The end of the data run at dataStart comes from the cache when a walk found it before.
        long a = Limits.RequestAlignment;
        var dataEnd = dataStart > offset ? _knownData.EndOfRunAt(dataStart) : -1;
        if (dataEnd < 0)
        {
            var holeStart = LibC.LSeek(fd.Fd, Math.Max(dataStart, offset), LibC.SEEK_HOLE);
            dataEnd = holeStart > offset ? (holeStart + a - 1) / a * a : offset + length;
            if (holeStart > dataStart)
            {
                _knownData.Remember(dataStart, dataEnd, generation);
            }
        }

        if (dataStart > offset)
        {
            var wholeHole = (dataStart - offset) / a * a;
            if (wholeHole > 0)
            {
                _knownHoles?.Remember(offset, offset + wholeHole, writes);
                return ValueTask.FromResult(new BlockStatus(Math.Min(wholeHole, length), hole));
            }
        }

        return ValueTask.FromResult(new BlockStatus(Math.Min(dataEnd - offset, length), data));
    }

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (!_isRegular)
        {
            await base.TruncateCoreAsync(length).ConfigureAwait(false);
            return;
        }

        using var fd = Lease();
        _knownData.Forget();
        var errno = await Task.Run(() => LibC.FTruncate(fd.Fd, length) == 0 ? 0 : Marshal.GetLastPInvokeError()).ConfigureAwait(false);
        _knownData.Forget();
        _knownHoles?.Wrote();
        if (errno != 0)
        {
            throw Failure("Failed to resize", errno);
        }

        Length = length;
    }
}
