using System.Collections.Concurrent;

namespace ExportServer.Block.Native;

/// <summary>
/// Dedicated threads for system calls that block on the device (pread/pwrite, above all with
/// O_DIRECT), like QEMU's aio=threads pool: a thread is started when a request finds every worker
/// busy, up to <see cref="MaxThreads"/>, and exits after <see cref="IdleTimeout"/> without work.
/// Keeping these calls off the .NET thread pool lets a queue depth of 32 mean 32 requests at the
/// device, without waiting for the thread pool to inject threads.
/// </summary>
internal sealed class BlockingIoPool
{
    public const int MaxThreads = 64;
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentQueue<BlockingIoRequest> _queue = new();
    private readonly ConcurrentQueue<BlockingIoRequest> _free = new();
    private readonly SemaphoreSlim _pending = new(0);
    private int _threads;
    private int _idle;

    public static BlockingIoPool Shared { get; } = new();

    /// <summary>One pread(2) of up to <paramref name="buffer"/>'s length; the byte count (0 at end of file) or -errno.</summary>
    public ValueTask<long> ReadAsync(nint fd, Memory<byte> buffer, long offset) =>
        Submit(fd, buffer.Pin(), buffer.Length, offset, write: false);

    /// <summary>
    /// pwrite(2) of the whole buffer, continuing after short writes; the byte count or -errno. With
    /// <paramref name="rwFlags"/> (RWF_*) it is pwritev2(2) with those flags.
    /// </summary>
    public ValueTask<long> WriteAsync(nint fd, ReadOnlyMemory<byte> buffer, long offset, int rwFlags = 0) =>
        Submit(fd, buffer.Pin(), buffer.Length, offset, write: true, rwFlags);

    /// <summary>What <see cref="ReadAsync"/> does, on the calling thread (see <see cref="Core.BlockingAllowed"/>).</summary>
    public static unsafe long ReadNow(nint fd, Span<byte> buffer, long offset)
    {
        fixed (byte* p = buffer)
        {
            return BlockingIoRequest.ReadOnce(fd, p, buffer.Length, offset);
        }
    }

    /// <summary>What <see cref="WriteAsync"/> does, on the calling thread (see <see cref="Core.BlockingAllowed"/>).</summary>
    public static unsafe long WriteNow(nint fd, ReadOnlySpan<byte> buffer, long offset, int rwFlags = 0)
    {
        fixed (byte* p = buffer)
        {
            return BlockingIoRequest.WriteAll(fd, p, buffer.Length, offset, rwFlags);
        }
    }

    private ValueTask<long> Submit(nint fd, System.Buffers.MemoryHandle pin, int length, long offset, bool write, int rwFlags = 0)
    {
        if (!_free.TryDequeue(out var request))
        {
            request = new BlockingIoRequest(this);
        }

        var task = request.Start(fd, pin, length, offset, write, rwFlags);
        _queue.Enqueue(request);
        if (Volatile.Read(ref _idle) == 0)
        {
            TryStartThread();
        }

        _pending.Release();
        return task;
    }

    internal void Return(BlockingIoRequest request) => _free.Enqueue(request);

    private void TryStartThread()
    {
        var n = Volatile.Read(ref _threads);
        while (n < MaxThreads)
        {
            var seen = Interlocked.CompareExchange(ref _threads, n + 1, n);
            if (seen == n)
            {
                new Thread(Work) { IsBackground = true, Name = "block-io" }.Start();
                return;
            }

            n = seen;
        }
    }

    private void Work()
    {
        while (true)
        {
            Interlocked.Increment(ref _idle);
            var woken = _pending.Wait(IdleTimeout);
            Interlocked.Decrement(ref _idle);
            if (!woken)
            {
                Interlocked.Decrement(ref _threads);

                // A request queued while this thread was deciding to leave still needs a worker.
                if (!_queue.IsEmpty && Volatile.Read(ref _idle) == 0)
                {
                    TryStartThread();
                }

                return;
            }

            if (_queue.TryDequeue(out var request))
            {
                request.Execute();
            }
        }
    }
}
