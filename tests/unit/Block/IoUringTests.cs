using ExportServer.Block.Core;
using ExportServer.Block.Native;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>
/// The io_uring wrapper against the kernel: a file opened with O_DIRECT in a temporary directory,
/// real reads, writes and syncs, and the errors the kernel gives back.
/// </summary>
public sealed class IoUringTests : IDisposable
{
    private const int Block = 4096;
    private readonly string _dir = Directory.CreateTempSubdirectory("es-uring-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task WritesThenReadsBackThroughTheRing()
    {
        using var ring = Create(8);
        var fd = OpenDirect("a.raw", blocks: 16);
        try
        {
            using var data = Filled(Block * 2, 0x5a);
            Assert.Equal(Block * 2, await ring.WriteAsync(fd, data.Memory, Block * 3));
            Assert.Equal(0, await ring.SyncAsync(fd));

            using var back = new AlignedBuffer(Block * 2);
            Assert.Equal(Block * 2, await ring.ReadAsync(fd, back.Memory, Block * 3));
            Assert.True(back.Memory.Span.SequenceEqual(data.Memory.Span));

            // At the end of the file a read is short, then empty.
            Assert.Equal(Block, await ring.ReadAsync(fd, back.Memory, Block * 15));
            Assert.Equal(0, await ring.ReadAsync(fd, back.Memory, Block * 16));
        }
        finally
        {
            LibC.Close((int)fd);
        }

        var bytes = File.ReadAllBytes(Path.Combine(_dir, "a.raw"));
        Assert.All(bytes.AsSpan(Block * 3, Block * 2).ToArray(), b => Assert.Equal(0x5a, b));
        Assert.All(bytes.AsSpan(0, Block * 3).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task WriteWithDsyncFlagCompletes()
    {
        using var ring = Create(8);
        var fd = OpenDirect("fua.raw", blocks: 4);
        try
        {
            using var data = Filled(Block, 0x11);
            Assert.Equal(Block, await ring.WriteAsync(fd, data.Memory, Block, LibC.RWF_DSYNC));
            Assert.Equal(0, await ring.SyncAsync(fd, dataOnly: false));
        }
        finally
        {
            LibC.Close((int)fd);
        }

        Assert.Equal(0x11, File.ReadAllBytes(Path.Combine(_dir, "fua.raw"))[Block]);
    }

    [Fact]
    public async Task ManyMoreRequestsThanTheRingHoldsAllComplete()
    {
        // 8 slots, 512 requests at once: the rest wait in the backlog until slots free.
        using var ring = Create(8);
        Assert.Equal(8, ring.Capacity);
        const int Count = 512;
        var fd = OpenDirect("many.raw", blocks: Count);
        var buffers = Enumerable.Range(0, Count).Select(i => Filled(Block, (byte)(i * 7))).ToArray();
        try
        {
            var writes = Enumerable.Range(0, Count).Select(i => ring.WriteAsync(fd, buffers[i].Memory, (long)i * Block).AsTask()).ToArray();
            Assert.All(await Task.WhenAll(writes), n => Assert.Equal(Block, n));

            foreach (var b in buffers)
            {
                b.Memory.Span.Clear();
            }

            var reads = Enumerable.Range(0, Count).Select(i => ring.ReadAsync(fd, buffers[i].Memory, (long)i * Block).AsTask()).ToArray();
            Assert.All(await Task.WhenAll(reads), n => Assert.Equal(Block, n));
            for (var i = 0; i < Count; i++)
            {
                Assert.True(buffers[i].Memory.Span.IndexOfAnyExcept((byte)(i * 7)) < 0, $"block {i} read back wrong");
            }
        }
        finally
        {
            LibC.Close((int)fd);
            foreach (var b in buffers)
            {
                ((IDisposable)b).Dispose();
            }
        }
    }

    [Fact]
    public async Task KernelErrorsComeBackAsNegativeErrno()
    {
        const int EBADF = 9;
        using var ring = Create(8);
        using var buffer = new AlignedBuffer(Block);

        Assert.Equal(-EBADF, await ring.ReadAsync(-1, buffer.Memory, 0));
        Assert.Equal(-EBADF, await ring.SyncAsync(-1));

        var fd = OpenDirect("err.raw", blocks: 4);
        var readOnly = LibC.Open(Path.Combine(_dir, "err.raw"), LibC.O_RDONLY | LibC.O_DIRECT | LibC.O_CLOEXEC, 0);
        try
        {
            // A descriptor opened read-only cannot be written.
            Assert.Equal(-EBADF, await ring.WriteAsync(readOnly, buffer.Memory, 0));

            // The ring still works after errors.
            Assert.Equal(Block, await ring.ReadAsync(fd, buffer.Memory, 0));
        }
        finally
        {
            LibC.Close((int)fd);
            LibC.Close(readOnly);
        }
    }

    [Fact]
    public async Task DisposeLetsRequestsInFlightFinishAndRefusesNewOnes()
    {
        const int Count = 256;
        var ring = Create(4);
        var fd = OpenDirect("dispose.raw", blocks: Count);
        var buffers = Enumerable.Range(0, Count).Select(_ => Filled(Block, 0x33)).ToArray();
        try
        {
            var writes = Enumerable.Range(0, Count).Select(i => ring.WriteAsync(fd, buffers[i].Memory, (long)i * Block).AsTask()).ToArray();
            var disposing = Task.Run(ring.Dispose);
            Assert.All(await Task.WhenAll(writes), n => Assert.Equal(Block, n));
            await disposing.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(ring.IsDisposed);

            Assert.Equal(-LibC.ECANCELED, await ring.ReadAsync(fd, buffers[0].Memory, 0));
        }
        finally
        {
            LibC.Close((int)fd);
            foreach (var b in buffers)
            {
                ((IDisposable)b).Dispose();
            }
        }

        Assert.True(File.ReadAllBytes(Path.Combine(_dir, "dispose.raw")).AsSpan().IndexOfAnyExcept((byte)0x33) < 0);
    }

    [Fact]
    public async Task InlineCompletionsContinueOnTheCompletionThread()
    {
        using var ring = Create(8, inlineCompletions: true);
        var fd = OpenDirect("inline.raw", blocks: 64);
        try
        {
            using var buffer = Filled(Block, 0x42);
            for (var i = 0; i < 64; i++)
            {
                Assert.Equal(Block, await ring.WriteAsync(fd, buffer.Memory, (long)i * Block));
            }

            // Off the test's synchronisation context, the code after an await runs where the request
            // ended: on the completion thread, unless the read ended before the await registered
            // (then the thread pool runs it).
            var threads = await Task.Run(async () =>
            {
                var names = new List<string?>();
                for (var i = 0; i < 64; i++)
                {
                    var read = ring.ReadAsync(fd, buffer.Memory, (long)i * Block);
                    var early = read.IsCompleted;
                    await read;
                    names.Add(early ? null : Thread.CurrentThread.Name);
                }

                return names;
            }).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(threads.Count(name => name == "io_uring") >= threads.Count / 2, string.Join(", ", threads));
        }
        finally
        {
            LibC.Close((int)fd);
        }
    }

    [Fact]
    public async Task RequestsReapedTogetherResumeInOneBatchAndFlushOnceAtItsEnd()
    {
        const int Count = 32;
        using var ring = Create(64, inlineCompletions: true);
        var fd = OpenDirect("batch.raw", blocks: Count);
        try
        {
            var buffers = Enumerable.Range(0, Count).Select(_ => new AlignedBuffer(Block)).ToArray();

            // A round where every read ended before the submitting thread reached its await (a busy
            // machine can preempt that thread while the ring reaps) shows nothing: it is run again.
            var flush = new BatchProbe();
            var resumedOnRing = 0;
            for (var round = 0; round < 20 && resumedOnRing == 0; round++)
            {
                flush = new BatchProbe();
                var probe = flush;
                var reads = await Task.Run(() =>
                {
                    var tasks = new Task<bool>[Count];
                    for (var i = 0; i < Count; i++)
                    {
                        var read = ring.ReadAsync(fd, buffers[i].Memory, (long)i * Block);
                        tasks[i] = ResumeAsync(read, probe);
                    }

                    return Task.WhenAll(tasks);
                }).WaitAsync(TimeSpan.FromSeconds(30));
                resumedOnRing = reads.Count(inBatch => inBatch);
            }

            // Every read that had not ended before its await resumed inside a batch, and each batch
            // ran the deferred flush once, after all of its requests, whatever their number. (The
            // last batch's flush may still be running when the test's own continuation gets here.)
            Assert.True(resumedOnRing > 0, "no read resumed on the completion thread in 20 rounds");
            Assert.True(SpinWait.SpinUntil(() => flush.Pending == 0, TimeSpan.FromSeconds(10)), "the last batch never flushed");
            Assert.Equal(resumedOnRing, flush.Deferred);
            Assert.InRange(flush.Flushes, 1, resumedOnRing);
            foreach (var buffer in buffers)
            {
                ((IDisposable)buffer).Dispose();
            }
        }
        finally
        {
            LibC.Close((int)fd);
        }
    }

    private static async Task<bool> ResumeAsync(ValueTask<long> read, BatchProbe flush)
    {
        if (read.IsCompleted)
        {
            Assert.Equal(Block, read.Result);
            return false;
        }

        Assert.Equal(Block, await read);
        var deferred = CompletionBatch.TryDefer(flush);
        if (deferred)
        {
            Assert.Equal("io_uring", Thread.CurrentThread.Name);
            flush.Defer();
        }

        return deferred;
    }

    /// <summary>Counts the requests that deferred it and how often it ran; written only on the completion thread.</summary>
    private sealed class BatchProbe : CompletionBatch.IFlush
    {
        private int _deferred;
        private int _pending;
        private int _flushes;

        public int Deferred => Volatile.Read(ref _deferred);

        public int Pending => Volatile.Read(ref _pending);

        public int Flushes => Volatile.Read(ref _flushes);

        public void Defer()
        {
            Volatile.Write(ref _deferred, _deferred + 1);
            Volatile.Write(ref _pending, _pending + 1);
        }

        public void Flush()
        {
            Assert.True(_pending > 0, "a flush ran with nothing deferred to it");
            Volatile.Write(ref _flushes, _flushes + 1);
            Volatile.Write(ref _pending, 0);
        }
    }

    [Fact]
    public unsafe void AThreadsOwnRingWaitsForEachRequestInPlace()
    {
        var ring = ThreadRing.Current;
        Assert.NotNull(ring);
        Assert.Same(ring, ThreadRing.Current);
        var fd = OpenDirect("here.raw", blocks: 8);
        try
        {
            using var data = Filled(Block * 2, 0x3c);
            using var back = new AlignedBuffer(Block * 2);
            var src = data.Memory.Pin();
            var dst = back.Memory.Pin();
            try
            {
                Assert.Equal(Block * 2, ring!.WriteAll(fd, (byte*)src.Pointer, Block * 2, Block, LibC.RWF_DSYNC));
                Assert.Equal(0, ring.Run(IoUringRequest.OpFsync, fd, null, 0, 0, IoUringRequest.FsyncDataSync));
                Assert.Equal(Block * 2, ring.Run(IoUringRequest.OpRead, fd, (byte*)dst.Pointer, Block * 2, Block, 0));
                Assert.True(back.Memory.Span.SequenceEqual(data.Memory.Span));

                // Short at the end of the file, EINVAL for an unaligned O_DIRECT read, EBADF (9) for a descriptor that is not open.
                Assert.Equal(Block, ring.Run(IoUringRequest.OpRead, fd, (byte*)dst.Pointer, Block * 2, Block * 7, 0));
                Assert.Equal(-LibC.EINVAL, ring.Run(IoUringRequest.OpRead, fd, (byte*)dst.Pointer, Block, 100, 0));
                Assert.Equal(-9, ring.Run(IoUringRequest.OpRead, 100000, (byte*)dst.Pointer, Block, 0, 0));
            }
            finally
            {
                src.Dispose();
                dst.Dispose();
            }
        }
        finally
        {
            LibC.Close((int)fd);
        }

        // Another thread has a ring of its own.
        ThreadRing? other = null;
        var t = new Thread(() => other = ThreadRing.Current);
        t.Start();
        t.Join();
        Assert.NotNull(other);
        Assert.NotSame(ThreadRing.Current, other);
    }

    private static IoUring Create(uint entries, bool inlineCompletions = false)
    {
        var errno = IoUring.TryCreate(entries, inlineCompletions, out var ring);
        Assert.True(errno == 0, $"io_uring_setup failed: {LibC.StrError(-errno)}");
        return ring!;
    }

    private nint OpenDirect(string name, int blocks)
    {
        var path = Path.Combine(_dir, name);
        using (var f = File.Create(path))
        {
            f.SetLength((long)blocks * Block);
        }

        var fd = LibC.Open(path, LibC.O_RDWR | LibC.O_DIRECT | LibC.O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open O_DIRECT failed: {LibC.StrError(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
        return fd;
    }

    private static AlignedBuffer Filled(int length, byte value)
    {
        var b = new AlignedBuffer(length);
        b.Memory.Span.Fill(value);
        return b;
    }
}
