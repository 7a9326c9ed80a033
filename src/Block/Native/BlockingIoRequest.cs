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
        var result = _write ? WriteAll() : ReadOnce();
        _pin.Dispose();
        _pin = default;
        _core.SetResult(result);
    }

    private long ReadOnce()
    {
        while (true)
        {
            var n = LibC.PRead(_fd, (byte*)_pin.Pointer, (nuint)_length, _offset);
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

    private long WriteAll()
    {
        long done = 0;
        while (done < _length)
        {
            var n = Write((byte*)_pin.Pointer + done, (int)(_length - done), _offset + done);
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

    private nint Write(byte* data, int length, long offset)
    {
        if (_rwFlags == 0)
        {
            return LibC.PWrite(_fd, data, (nuint)length, offset);
        }

        var iov = new IoVec { Base = data, Length = (nuint)length };
        return LibC.PWriteV2(_fd, &iov, 1, offset, _rwFlags);
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
