using ExportServer.Block.Filters.Throttle;
using Xunit;

namespace ExportServer.UnitTests.Throttle;

/// <summary>The leaky-bucket arithmetic, on a clock in nanoseconds that the test moves.</summary>
public sealed class ThrottleStateTests
{
    private const long Ms = 1_000_000;

    private static ThrottleConfig Config(ThrottleBucketKind kind, ulong avg, ulong max = 0, ulong burstLength = 1)
    {
        var c = new ThrottleConfig();
        c.Avg[(int)kind] = avg;
        c.Max[(int)kind] = max;
        c.BurstLength[(int)kind] = burstLength;
        c.Validate();
        return c;
    }

    /// <summary>Runs requests at time <paramref name="now"/> while none must wait; returns how many ran and the wait of the next.</summary>
    private static (int Ran, long Wait) RunUntilThrottled(ThrottleState s, bool isWrite, long bytes, long now)
    {
        var ran = 0;
        while (true)
        {
            var wait = s.ComputeWait(isWrite, now);
            if (wait > 0)
            {
                return (ran, wait);
            }

            s.Account(isWrite, bytes);
            ran++;
        }
    }

    [Fact]
    public void WithoutBurstRateATenthOfASecondPassesThenRequestsAreSpacedAtTheAverage()
    {
        var s = new ThrottleState(Config(ThrottleBucketKind.IopsTotal, 50), 0);

        // The bucket holds 50/10 = 5 operations; a request waits once the level exceeds that.
        var (ran, wait) = RunUntilThrottled(s, isWrite: false, 4096, 0);
        Assert.Equal(6, ran);
        Assert.Equal(20 * Ms, wait);

        // One operation leaks every 20 ms, so one more request may run then, and not before.
        Assert.Equal(10 * Ms, s.ComputeWait(false, 10 * Ms));
        Assert.Equal(0, s.ComputeWait(false, 20 * Ms));
        s.Account(false, 4096);
        Assert.Equal(20 * Ms, s.ComputeWait(false, 20 * Ms));
    }

    [Fact]
    public void SustainedRateIsTheAverage()
    {
        var s = new ThrottleState(Config(ThrottleBucketKind.IopsTotal, 50), 0);
        long now = 0;
        var ran = 0;
        while (now < 10_000 * Ms)
        {
            var wait = s.ComputeWait(true, now);
            if (wait > 0)
            {
                now += wait;
                continue;
            }

            s.Account(true, 512);
            ran++;
        }

        // 10 s at 50/s plus the initial bucket of 5 (+1 that fills it).
        Assert.InRange(ran, 500, 507);
    }

    [Fact]
    public void BytesBucketCountsBytes()
    {
        var s = new ThrottleState(Config(ThrottleBucketKind.BpsTotal, 1 << 20), 0);

        // The bucket holds 1 MiB / 10 = 104857.6 bytes: two 64 KiB requests fit, the third must wait.
        var (ran, wait) = RunUntilThrottled(s, false, 65536, 0);
        Assert.Equal(2, ran);
        var extra = 2 * 65536 - (1 << 20) / 10.0;
        Assert.Equal((long)(extra * 1e9 / (1 << 20)), wait);
    }

    [Fact]
    public void DirectionalBucketsLimitOnlyTheirDirection()
    {
        var s = new ThrottleState(Config(ThrottleBucketKind.IopsWrite, 10), 0);
        var (ranWrites, waitWrite) = RunUntilThrottled(s, true, 512, 0);
        Assert.Equal(2, ranWrites);
        Assert.Equal(100 * Ms, waitWrite);
        Assert.Equal(0, s.ComputeWait(false, 0));
        s.Account(false, 512);
        Assert.Equal(2, s.Level(ThrottleBucketKind.IopsWrite));
    }

    [Fact]
    public void TotalBucketIsSharedByReadsAndWrites()
    {
        var s = new ThrottleState(Config(ThrottleBucketKind.IopsTotal, 10), 0);
        s.Account(false, 512);
        s.Account(true, 512);
        Assert.Equal(100 * Ms, s.ComputeWait(false, 0));
        Assert.Equal(100 * Ms, s.ComputeWait(true, 0));
    }

    [Fact]
    public void BurstRateAllowsFastRequestsUntilTheBurstIsUsed()
    {
        // avg 10/s, bursts at 100/s for 2 s: the burst bucket (100/10 = 10) spaces requests at 100/s.
        var s = new ThrottleState(Config(ThrottleBucketKind.IopsTotal, 10, max: 100, burstLength: 2), 0);
        var (ran, wait) = RunUntilThrottled(s, false, 512, 0);
        Assert.Equal(11, ran);
        Assert.Equal(10 * Ms, wait);

        // At the burst rate the main bucket (100 * 2 = 200) fills at 100 - 10 per second, so after
        // about 2.2 s requests fall back to the average rate (waits of 100 ms instead of 10 ms).
        long now = 0;
        var total = ran;
        long? slowedAt = null;
        while (now < 5_000 * Ms)
        {
            var w = s.ComputeWait(false, now);
            if (w > 0)
            {
                if (w > 20 * Ms)
                {
                    slowedAt ??= now;
                }

                now += w;
                continue;
            }

            s.Account(false, 512);
            total++;
        }

        Assert.NotNull(slowedAt);
        Assert.InRange(slowedAt.Value, 2_000 * Ms, 2_400 * Ms);
        Assert.InRange(total, 240, 280);
    }

    [Fact]
    public void IopsSizeCountsLargeRequestsAsSeveralOperations()
    {
        var c = Config(ThrottleBucketKind.IopsTotal, 100);
        c.OpSize = 4096;
        var s = new ThrottleState(c, 0);
        s.Account(false, 16384);
        Assert.Equal(4, s.Level(ThrottleBucketKind.IopsTotal));
        s.Account(false, 512);
        Assert.Equal(5, s.Level(ThrottleBucketKind.IopsTotal));
    }

    [Fact]
    public void UnlimitedBucketsNeverWait()
    {
        var s = new ThrottleState(new ThrottleConfig(), 0);
        for (var i = 0; i < 1000; i++)
        {
            Assert.Equal(0, s.ComputeWait(i % 2 == 0, 0));
            s.Account(i % 2 == 0, 1 << 20);
        }
    }
}
