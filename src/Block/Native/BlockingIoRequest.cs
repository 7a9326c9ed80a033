using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace ExportServer.Block.Native;

/// <summary>
/// One pread/pwrite handed to <see cref="BlockingIoPool"/>: a reusable value-task source, so that a
/// request allocates nothing once the pool is warm. The buffer stays pinned until completion and the
/// awaiting code resumes on the .NET thread pool, never on an I/O thread.
/// </summary>
internal sealed unsafe class BlockingIoRequest : IValueTaskSource<long>
{
    private readonly BlockingIoPool _pool;
    private ManualResetValueTaskSourceCore<long> _core = new() { RunContinuationsAsynchronously = true };
    private nint _fd;
    private MemoryHandle _pin;
    private int _length;
    private long _offset;
    private bool _write;
    private int _rwFlags;

    public BlockingIoRequest(BlockingIoPool pool)
    {
        _pool = pool;
    }

    public ValueTask<long> Start(nint fd, MemoryHandle pin, int length, long offset, bool write, int rwFlags)
    {
        _core.Reset();
        _fd = fd;
        _pin = pin;
        _length = length;
        _offset = offset;
        _write = write;
        _rwFlags = rwFlags;
        return new ValueTask<long>(this, _core.Version);
    }

    /// <summary>Runs on an I/O thread.</summary>
    public void Execute()
    {
        var result = _write
            ? WriteAll(_fd, (byte*)_pin.Pointer, _length, _offset, _rwFlags)
            : ReadOnce(_fd, (byte*)_pin.Pointer, _length, _offset);
        _pin.Dispose();
        _pin = default;
        _core.SetResult(result);
    }

    /// <summary>One pread(2), repeated after EINTR; the byte count or -errno. Blocks the calling thread.</summary>
    internal static long ReadOnce(nint fd, byte* buffer, int length, long offset)
    {
        while (true)
        {
            var n = LibC.PRead(fd, buffer, (nuint)length, offset);
            if (n >= 0)
            {
                return n;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.EINTR)
            {
                return -errno;
            }
        }
    }

    /// <summary>Writes all <paramref name="length"/> bytes, continuing after short writes; the byte count or -errno. Blocks the calling thread.</summary>
    internal static long WriteAll(nint fd, byte* buffer, int length, long offset, int rwFlags)
    {
        long done = 0;
        while (done < length)
        {
            var n = Write(fd, buffer + done, (int)(length - done), offset + done, rwFlags);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.EINTR)
                {
                    continue;
                }

                return -errno;
            }

            if (n == 0)
            {
                return -LibC.EIO;
            }

            done += n;
        }

        return done;
    }

    private static nint Write(nint fd, byte* data, int length, long offset, int rwFlags)
    {
        if (rwFlags == 0)
        {
            return LibC.PWrite(fd, data, (nuint)length, offset);
        }

        var iov = new IoVec { Base = data, Length = (nuint)length };
        return LibC.PWriteV2(fd, &iov, 1, offset, rwFlags);
    }

    public long GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _pool.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
