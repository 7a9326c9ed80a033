namespace ExportServer.Block.Filters.Throttle;

/// <summary>
/// The leaky-bucket accounting of QEMU's util/throttle.c, on a clock given in nanoseconds: every
/// request that runs adds its bytes and operations to the buckets of its direction and of the
/// totals; buckets leak at their average rate (and burst buckets at the burst rate); a request
/// must wait while any of its buckets is fuller than the size it may fill without waiting.
/// Not thread-safe: the group serialises calls.
/// </summary>
internal sealed class ThrottleState
{
    private const double NanosecondsPerSecond = 1e9;

    private static readonly ThrottleBucketKind[][] s_checked =
    [
        [ThrottleBucketKind.BpsTotal, ThrottleBucketKind.BpsRead, ThrottleBucketKind.IopsTotal, ThrottleBucketKind.IopsRead],
        [ThrottleBucketKind.BpsTotal, ThrottleBucketKind.BpsWrite, ThrottleBucketKind.IopsTotal, ThrottleBucketKind.IopsWrite],
    ];

    private readonly ThrottleConfig _config;
    private readonly double[] _level = new double[ThrottleConfig.BucketCount];
    private readonly double[] _burstLevel = new double[ThrottleConfig.BucketCount];
    private long _previousLeak;

    public ThrottleState(ThrottleConfig config, long nowNs)
    {
        _config = config;
        _previousLeak = nowNs;
    }

    /// <summary>How full a bucket is, in bytes or operations (for tests and diagnostics).</summary>
    public double Level(ThrottleBucketKind kind) => _level[(int)kind];

    /// <summary>Leaks the buckets up to <paramref name="nowNs"/>, then says how long a request of this direction must wait (0: it may run now).</summary>
    public long ComputeWait(bool isWrite, long nowNs)
    {
        Leak(nowNs);
        long wait = 0;
        foreach (var kind in s_checked[isWrite ? 1 : 0])
        {
            wait = Math.Max(wait, BucketWait((int)kind));
        }

        return wait;
    }

    /// <summary>Counts a request that runs now: its bytes in the bps buckets, its operations (by iops-size) in the iops buckets.</summary>
    public void Account(bool isWrite, long bytes)
    {
        var units = _config.OpSize != 0 && (ulong)bytes > _config.OpSize ? (double)bytes / _config.OpSize : 1.0;
        foreach (var kind in s_checked[isWrite ? 1 : 0])
        {
            var i = (int)kind;
            if (_config.Avg[i] == 0)
            {
                continue;
            }

            var amount = ThrottleConfig.IsBytes(kind) ? bytes : units;
            _level[i] += amount;
            if (_config.BurstLength[i] > 1)
            {
                _burstLevel[i] += amount;
            }
        }
    }

    private void Leak(long nowNs)
    {
        var delta = nowNs - _previousLeak;
        _previousLeak = nowNs;
        if (delta <= 0)
        {
            return;
        }

        for (var i = 0; i < ThrottleConfig.BucketCount; i++)
        {
            _level[i] = Math.Max(_level[i] - (_config.Avg[i] * (double)delta / NanosecondsPerSecond), 0);
            if (_config.BurstLength[i] > 1)
            {
                _burstLevel[i] = Math.Max(_burstLevel[i] - (_config.Max[i] * (double)delta / NanosecondsPerSecond), 0);
            }
        }
    }

    /// <summary>
    /// QEMU's throttle_compute_wait: without a burst rate a bucket holds a tenth of a second at the
    /// average rate (so short bursts are not cut into single requests); with one it holds the whole
    /// burst, and the burst bucket keeps the burst itself at the burst rate.
    /// </summary>
    private long BucketWait(int i)
    {
        double avg = _config.Avg[i], max = _config.Max[i];
        if (avg == 0)
        {
            return 0;
        }

        double bucketSize, burstBucketSize;
        if (max == 0)
        {
            bucketSize = avg / 10;
            burstBucketSize = 0;
        }
        else
        {
            bucketSize = max * _config.BurstLength[i];
            burstBucketSize = max / 10;
        }

        var extra = _level[i] - bucketSize;
        if (extra > 0)
        {
            return (long)(extra * NanosecondsPerSecond / avg);
        }

        if (_config.BurstLength[i] > 1)
        {
            extra = _burstLevel[i] - burstBucketSize;
            if (extra > 0)
            {
                return (long)(extra * NanosecondsPerSecond / max);
            }
        }

        return 0;
    }
}
