namespace ExportServer.Block.Jobs;

/// <summary>
/// A job's <c>speed</c>: at most <see cref="Speed"/> bytes per second, accounted in 100 ms slices
/// like QEMU's ratelimit (a request that would exceed the slice's quota waits for the next slice).
/// Zero means unlimited.
/// </summary>
public sealed class RateLimiter
{
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(100);
    private readonly TimeProvider _time;
    private long _speed;
    private long _sliceStart;
    private long _dispatched;

    public RateLimiter(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
    }

    public long Speed
    {
        get => Interlocked.Read(ref _speed);
        set => Interlocked.Exchange(ref _speed, value);
    }

    /// <summary>
    /// Accounts <paramref name="bytes"/> if the current slice has room and returns zero; otherwise
    /// returns how long to wait before asking again.
    /// </summary>
    public TimeSpan Reserve(long bytes)
    {
        var speed = Speed;
        if (speed <= 0)
        {
            return TimeSpan.Zero;
        }

        lock (this)
        {
            var now = _time.GetTimestamp();
            var elapsed = _time.GetElapsedTime(_sliceStart, now);
            if (_sliceStart == 0 || elapsed >= Slice)
            {
                _sliceStart = now;
                _dispatched = 0;
                elapsed = TimeSpan.Zero;
            }

            var quota = Math.Max(1, speed / 10);
            if (_dispatched >= quota)
            {
                return Slice - elapsed;
            }

            _dispatched += bytes;
            return TimeSpan.Zero;
        }
    }
}
