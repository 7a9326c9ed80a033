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
    private const int SysSetup = 425;
    private const int SysEnter = 426;
    private const uint EnterGetEvents = 1;
    private const uint Entries = 2;

    [ThreadStatic]
    private static ThreadRing? t_ring;

    [ThreadStatic]
    private static bool t_refused;

    private readonly int _fd;
    private readonly IoUringMemory _memory;
    private readonly uint* _sqHead;
    private readonly uint* _sqTail;
    private readonly uint* _sqArray;
    private readonly uint _sqMask;
    private readonly uint* _cqHead;
    private readonly uint* _cqTail;
    private readonly uint _cqMask;
    private readonly byte* _cqes;

    private ThreadRing(int fd, in IoUringParams p, IoUringMemory memory)
    {
        _fd = fd;
        _memory = memory;
        _sqHead = (uint*)(memory.SqRing + p.SqHead);
        _sqTail = (uint*)(memory.SqRing + p.SqTail);
        _sqMask = *(uint*)(memory.SqRing + p.SqRingMask);
        _sqArray = (uint*)(memory.SqRing + p.SqArray);
        _cqHead = (uint*)(memory.CqRing + p.CqHead);
        _cqTail = (uint*)(memory.CqRing + p.CqTail);
        _cqMask = *(uint*)(memory.CqRing + p.CqRingMask);
        _cqes = memory.CqRing + p.Cqes;
    }

    /// <summary>The calling thread's ring, or null when the kernel refused one to it.</summary>
    public static ThreadRing? Current
    {
        get
        {
            if (t_ring is not null || t_refused)
            {
                return t_ring;
            }

            IoUringParams p = default;
            var fd = (int)LibC.Syscall(SysSetup, Entries, (long)&p, 0, 0, 0, 0);
            if (fd < 0 || IoUringMemory.Map(fd, p, out var memory) != 0)
            {
                if (fd >= 0)
                {
                    LibC.Close(fd);
                }

                t_refused = true;
                return null;
            }

            return t_ring = new ThreadRing(fd, p, memory);
        }
    }

    /// <summary>One read, write or fsync (<see cref="IoUringRequest"/>'s opcodes), waited for here; the kernel's result (bytes or -errno).</summary>
    public long Run(byte opcode, nint fd, byte* buffer, int length, long offset, uint opFlags)
    {
        var tail = *_sqTail;
        var index = tail & _sqMask;
        IoUringRequest.FillEntry(_memory.Sqes + (index * IoUringRequest.SqeSize), opcode, fd, buffer, length, offset, opFlags, 1);
        _sqArray[index] = index;
        Volatile.Write(ref *_sqTail, tail + 1);

        var submitted = false;
        while (true)
        {
            var head = *_cqHead;
            if (head != Volatile.Read(ref *_cqTail))
            {
                var result = *(int*)(_cqes + ((head & _cqMask) * IoUringRequest.CqeSize) + 8);
                Volatile.Write(ref *_cqHead, head + 1);
                return result;
            }

            // Submits the entry (once) and waits for its completion in the same call.
            var n = LibC.Syscall(SysEnter, _fd, submitted ? 0 : 1, 1, EnterGetEvents, 0, 0);
            if (n >= 0)
            {
                submitted = true;
                continue;
            }

            var errno = Marshal.GetLastPInvokeError();

            // An interrupted enter may or may not have consumed the entry: the ring's head says.
            submitted |= Volatile.Read(ref *_sqHead) == tail + 1;
            if (errno is LibC.EINTR or LibC.EAGAIN)
            {
                continue;
            }

            if (submitted)
            {
                // The kernel has the buffer: giving up would let it write to memory that is reused.
                Environment.FailFast($"io_uring_enter failed: {LibC.StrError(errno)}");
            }

            Volatile.Write(ref *_sqTail, tail);
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
