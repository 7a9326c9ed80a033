namespace ExportServer.Block.Jobs;

/// <summary>
/// A job's <c>speed</c>: at most <see cref="Speed"/> bytes per second on average, accounted in 100 ms
/// slices like QEMU's ratelimit. A request goes when its slice still has quota; the one that
/// exceeds it stretches the slice to as many slices as the bytes dispatched in it are worth, and
/// the next request waits for that stretched slice to end. So a chunk far larger than a slice's
/// quota (1 MiB at speed 1 MiB/s) is followed by a wait of a whole second, not of one slice.
/// Zero means unlimited.
/// </summary>
public sealed class RateLimiter
{
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(100);
    private readonly TimeProvider _time;
    private long _speed;
    private long _sliceStart;
    private long _sliceEnd;
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
            var sliceTicks = (long)(Slice.TotalSeconds * _time.TimestampFrequency);
            if (_sliceEnd == 0 || now >= _sliceEnd)
            {
                (_sliceStart, _sliceEnd, _dispatched) = (now, now + sliceTicks, 0);
            }

            var quota = Math.Max(1, speed / 10);
            if (_dispatched >= quota)
            {
                // The stretched slice at the current speed (block-job-set-speed may have changed it).
                _sliceEnd = _sliceStart + (long)((double)_dispatched / quota * sliceTicks);
                if (now < _sliceEnd)
                {
                    return _time.GetElapsedTime(now, _sliceEnd);
                }

                (_sliceStart, _sliceEnd, _dispatched) = (now, now + sliceTicks, 0);
            }

            _dispatched += bytes;
            if (_dispatched >= quota)
            {
                _sliceEnd = _sliceStart + (long)((double)_dispatched / quota * sliceTicks);
            }

            return TimeSpan.Zero;
        }
    }
}
