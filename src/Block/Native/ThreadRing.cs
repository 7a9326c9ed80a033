using System.Runtime.InteropServices;

namespace ExportServer.Block.Native;

/// <summary>
/// A small io_uring of one thread's own, for the requests that thread may wait for in place
/// (<see cref="Core.BlockingAllowed"/>) on a node that uses io_uring: one io_uring_enter submits
/// the entry and waits for its completion, which is then reaped here, so neither the shared ring's
/// completion thread nor a thread switch takes part. Created at a thread's first such request; a
/// thread where the kernel refuses it goes through the shared ring instead.
/// </summary>
internal sealed unsafe class ThreadRing
{
    private const uint Entries = 2;

    [ThreadStatic]
    private static ThreadRing? t_ring;

    [ThreadStatic]
    private static bool t_refused;

    private readonly IoUringMemory _ring;

    private ThreadRing(IoUringMemory ring) => _ring = ring;

    /// <summary>The calling thread's ring, or null when the kernel refused one to it.</summary>
    public static ThreadRing? Current
    {
        get
        {
            if (t_ring is not null || t_refused)
            {
                return t_ring;
            }

            if (IoUringMemory.Setup(Entries, out var ring) != 0)
            {
                t_refused = true;
                return null;
            }

            return t_ring = new ThreadRing(ring!);
        }
    }

    /// <summary>One read, write or fsync (<see cref="IoUringRequest"/>'s opcodes), waited for here; the kernel's result (bytes or -errno).</summary>
    public long Run(byte opcode, nint fd, byte* buffer, int length, long offset, uint opFlags)
    {
        var tail = *_ring.SqTail;
        var index = tail & _ring.SqMask;
        IoUringRequest.FillEntry(_ring.Sqes + (index * IoUringRequest.SqeSize), opcode, fd, buffer, length, offset, opFlags, 1);
        _ring.SqArray[index] = index;
        Volatile.Write(ref *_ring.SqTail, tail + 1);

        var submitted = false;
        while (true)
        {
            var head = *_ring.CqHead;
            if (head != Volatile.Read(ref *_ring.CqTail))
            {
                var result = *(int*)(_ring.Cqes + ((head & _ring.CqMask) * IoUringRequest.CqeSize) + 8);
                Volatile.Write(ref *_ring.CqHead, head + 1);
                return result;
            }

            // Submits the entry (once) and waits for its completion in the same call.
            if (_ring.Enter(submitted ? 0u : 1u, 1, IoUringMemory.EnterGetEvents) >= 0)
            {
                submitted = true;
                continue;
            }

            var errno = Marshal.GetLastPInvokeError();

            // An interrupted enter may or may not have consumed the entry: the ring's head says.
            submitted |= Volatile.Read(ref *_ring.SqHead) == tail + 1;
            if (errno is LibC.EINTR or LibC.EAGAIN)
            {
                continue;
            }

            if (submitted)
            {
                // The kernel has the buffer: giving up would let it write to memory that is reused.
                Environment.FailFast($"io_uring_enter failed: {LibC.StrError(errno)}");
            }

            Volatile.Write(ref *_ring.SqTail, tail);
            return -errno;
        }
    }

    /// <summary>Writes the whole buffer, continuing after short writes; the byte count or -errno.</summary>
    public long WriteAll(nint fd, byte* buffer, int length, long offset, int rwFlags)
    {
        long done = 0;
        while (done < length)
        {
            var n = Run(IoUringRequest.OpWrite, fd, buffer + done, (int)(length - done), offset + done, (uint)rwFlags);
            if (n <= 0)
            {
                return n < 0 ? n : -LibC.EIO;
            }

            done += n;
        }

        return done;
    }
}
