using System.Runtime.InteropServices;
using ExportServer.Block.Core;

namespace ExportServer.Block.Native;

/// <summary>
/// An io_uring instance driven through the raw system calls, QEMU's aio=io_uring: a request is
/// queued and submitted on the calling thread (no thread switch), and one completion thread blocks
/// in io_uring_enter until completions arrive, then ends their requests. At most
/// <see cref="Capacity"/> requests are with the kernel; more wait in a backlog that the completion
/// thread submits as slots free, so no caller ever blocks on a full ring. Results are the kernel's:
/// a byte count, or a negative errno.
/// </summary>
internal sealed unsafe class IoUring : IDisposable
{
    /// <summary>user_data of the no-op that wakes the completion thread at dispose; requests use their slot + 1.</summary>
    private const ulong StopMarker = 0;

    /// <summary>Submission entries of the shared ring: more than any queue depth an NBD client keeps (QEMU's is 128).</summary>
    private const uint SharedEntries = 256;

    private readonly IoUringMemory _memory;
    private readonly object _lock = new();
    private readonly IoUringRequest?[] _slots;
    private readonly Stack<int> _freeSlots;
    private readonly Queue<IoUringRequest> _backlog = new();
    private readonly System.Collections.Concurrent.ConcurrentQueue<IoUringRequest> _pool = new();
    private readonly bool _inlineCompletions;
    private readonly Thread _reaper;
    private bool _disposing;
    private volatile bool _disposed;

    private IoUring(IoUringMemory memory, bool inlineCompletions)
    {
        _memory = memory;
        _inlineCompletions = inlineCompletions;

        // The completion queue is twice the submission queue; with no more requests in flight than
        // submission entries it cannot overflow.
        Capacity = (int)memory.Entries;
        _slots = new IoUringRequest?[Capacity];
        _freeSlots = new Stack<int>(Enumerable.Range(0, Capacity).Reverse());
        _reaper = new Thread(Reap) { IsBackground = true, Name = "io_uring" };
        _reaper.Start();
    }

    private static readonly Lazy<IoUring?> SharedRing = new(CreateShared);

    /// <summary>
    /// The process's ring for the file nodes that ask for one, created at first use; null when the
    /// kernel has no io_uring for this process, which is said once on stderr (requests then go
    /// through <see cref="BlockingIoPool"/>).
    /// </summary>
    public static IoUring? Shared => SharedRing.Value;

    /// <summary>How many requests can be with the kernel at once.</summary>
    public int Capacity { get; }

    /// <summary>
    /// Sets up a ring of <paramref name="entries"/> submission entries (a power of two); the negative
    /// errno of io_uring_setup or mmap when the kernel refuses (ENOSYS: no io_uring; EPERM: forbidden
    /// by kernel.io_uring_disabled or a seccomp filter). With <paramref name="inlineCompletions"/>,
    /// code awaiting a request continues on the completion thread, requests reaped together in one
    /// <see cref="CompletionBatch"/>; without, on the thread pool.
    /// </summary>
    public static int TryCreate(uint entries, bool inlineCompletions, out IoUring? ring)
    {
        var errno = IoUringMemory.Setup(entries, out var memory);
        ring = errno == 0 ? new IoUring(memory!, inlineCompletions) : null;
        return errno;
    }

    private static IoUring? CreateShared()
    {
        // Completions run their continuations on the completion thread: the reply to a request is
        // then sent without another thread switch, as QEMU sends it from the thread that reaped it.
        var errno = TryCreate(SharedEntries, inlineCompletions: true, out var ring);
        if (errno != 0)
        {
            Console.Error.WriteLine(
                $"{Path.GetFileName(Environment.ProcessPath) ?? "export-server"}: warning: io_uring is not available ({LibC.StrError(-errno)}), " +
                "direct I/O goes through I/O threads");
        }

        return ring;
    }

    /// <summary>One read of up to <paramref name="buffer"/>'s length at <paramref name="offset"/>; the byte count (0 at end of file) or -errno.</summary>
    public ValueTask<long> ReadAsync(nint fd, Memory<byte> buffer, long offset) =>
        Submit(IoUringRequest.OpRead, fd, buffer.Pin(), buffer.Length, offset, 0);

    /// <summary>One write of up to <paramref name="buffer"/>'s length, with RWF_* <paramref name="rwFlags"/>; the byte count or -errno.</summary>
    public ValueTask<long> WriteAsync(nint fd, ReadOnlyMemory<byte> buffer, long offset, int rwFlags = 0) =>
        Submit(IoUringRequest.OpWrite, fd, buffer.Pin(), buffer.Length, offset, (uint)rwFlags);

    /// <summary>fdatasync (or with <paramref name="dataOnly"/> false, fsync) of the file; 0 or -errno.</summary>
    public ValueTask<long> SyncAsync(nint fd, bool dataOnly = true) =>
        Submit(IoUringRequest.OpFsync, fd, default, 0, 0, dataOnly ? IoUringRequest.FsyncDataSync : 0);

    private ValueTask<long> Submit(byte opcode, nint fd, System.Buffers.MemoryHandle pin, int length, long offset, uint opFlags)
    {
        if (!_pool.TryDequeue(out var request))
        {
            request = new IoUringRequest(this, _inlineCompletions);
        }

        var task = request.Start(opcode, fd, pin, length, offset, opFlags);
        long failed;
        lock (_lock)
        {
            if (_disposing)
            {
                failed = -LibC.ECANCELED;
            }
            else if (_freeSlots.Count == 0 || _backlog.Count > 0)
            {
                _backlog.Enqueue(request);
                return task;
            }
            else
            {
                failed = Push(request);
                if (failed == 0)
                {
                    return task;
                }
            }
        }

        request.Complete(failed);
        return task;
    }

    internal void Return(IoUringRequest request) => _pool.Enqueue(request);

    /// <summary>Puts the request in a free slot and hands it to the kernel; 0, or -errno when io_uring_enter refused it. Holds _lock.</summary>
    private long Push(IoUringRequest request)
    {
        var slot = _freeSlots.Pop();
        _slots[slot] = request;
        var errno = PushEntry(request, (ulong)slot + 1);
        if (errno != 0)
        {
            _slots[slot] = null;
            _freeSlots.Push(slot);
        }

        return errno;
    }

    /// <summary>Writes one submission entry and submits it; 0 or -errno (the entry is then taken back). Holds _lock.</summary>
    private int PushEntry(IoUringRequest? request, ulong userData)
    {
        var tail = *_memory.SqTail;
        var index = tail & _memory.SqMask;
        var sqe = _memory.Sqes + (index * IoUringRequest.SqeSize);
        if (request is null)
        {
            IoUringRequest.FillNop(sqe, userData);
        }
        else
        {
            request.Fill(sqe, userData);
        }

        _memory.SqArray[index] = index;
        Volatile.Write(ref *_memory.SqTail, tail + 1);
        while (true)
        {
            var n = _memory.Enter(1, 0, 0);
            if (n >= 0)
            {
                return 0;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.EINTR)
            {
                // Not consumed: only this thread moves the tail, so the entry can be taken back.
                Volatile.Write(ref *_memory.SqTail, tail);
                return -errno;
            }
        }
    }

    /// <summary>
    /// The completion thread: waits for completions, frees their slots, submits the backlog, then ends
    /// the requests. Once the ring is disposed and nothing is left in flight it releases the ring and exits.
    /// </summary>
    private void Reap()
    {
        var done = new (IoUringRequest Request, long Result)[Capacity * 2];
        while (true)
        {
            var head = *_memory.CqHead;
            var tail = Volatile.Read(ref *_memory.CqTail);
            if (head == tail)
            {
                lock (_lock)
                {
                    if (_disposing && _freeSlots.Count == Capacity && _backlog.Count == 0)
                    {
                        break;
                    }
                }

                if (_memory.Enter(0, 1, IoUringMemory.EnterGetEvents) < 0 && Marshal.GetLastPInvokeError() is not (LibC.EINTR or LibC.EAGAIN))
                {
                    Environment.FailFast($"io_uring_enter failed: {LibC.StrError(Marshal.GetLastPInvokeError())}");
                }

                continue;
            }

            var count = 0;
            lock (_lock)
            {
                for (; head != tail; head++)
                {
                    var cqe = _memory.Cqes + ((head & _memory.CqMask) * IoUringRequest.CqeSize);
                    var userData = *(ulong*)cqe;
                    if (userData == StopMarker)
                    {
                        continue;
                    }

                    var slot = (int)(userData - 1);
                    var request = _slots[slot]!;
                    var result = *(int*)(cqe + 8);
                    _slots[slot] = null;
                    _freeSlots.Push(slot);
                    if (result == -LibC.ECANCELED && !_disposing && !request.Resubmitted)
                    {
                        // Not asked for by anyone (no request here is ever cancelled by the daemon):
                        // seen once for an RWF_DSYNC write under the full test suite, not reproduced
                        // alone. The kernel cancels work it took over from a submitting thread that
                        // has exited, which fits; submitted again from this thread, which lives as
                        // long as the ring, the request goes through instead of failing.
                        request.Resubmitted = true;
                        _backlog.Enqueue(request);
                        continue;
                    }

                    done[count++] = (request, result);
                }

                Volatile.Write(ref *_memory.CqHead, head);
                while (_backlog.Count > 0 && _freeSlots.Count > 0)
                {
                    var next = _backlog.Dequeue();
                    var errno = Push(next);
                    if (errno != 0)
                    {
                        done[count++] = (next, errno);
                    }
                }
            }

            // Requests reaped together continue here one after the other, as one batch: what their
            // continuations defer (an NBD connection's send) is done once at its end. Handing all but
            // the last to the thread pool instead cost 4-6 us of CPU per 4 KiB read at queue depth 32
            // (pool wake-ups and idle workers spinning in sched_yield, one send per reply), on two
            // cores shared with the client the limit of the whole exchange.
            CompletionBatch.Begin();
            for (var i = 0; i < count; i++)
            {
                done[i].Request.Complete(done[i].Result);
                done[i] = default;
            }

            CompletionBatch.End();
        }

        _memory.Dispose();
        _disposed = true;
    }

    /// <summary>
    /// Refuses new requests (they end with -ECANCELED) and lets those in flight and in the backlog
    /// finish; the completion thread then releases the ring and exits. Returns when it has, except
    /// when called from code running on the completion thread, which must not wait for itself.
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposing)
            {
                return;
            }

            _disposing = true;

            // Wakes the completion thread should it be waiting with nothing in flight.
            while (PushEntry(null, StopMarker) != 0)
            {
                Thread.Sleep(1);
            }
        }

        if (Thread.CurrentThread != _reaper)
        {
            _reaper.Join();
        }
    }

    /// <summary>Whether <see cref="Dispose"/> has finished.</summary>
    internal bool IsDisposed => _disposed;
}
