using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

public sealed class RateLimiterTests
{
    [Fact]
    public void UnlimitedNeverWaits()
    {
        var r = new RateLimiter();
        Assert.Equal(TimeSpan.Zero, r.Reserve(1L << 40));
    }

    [Fact]
    public void ASliceTakesATenthOfTheSpeedThenWaitsForTheNextSlice()
    {
        var time = new ManualClock();
        var r = new RateLimiter(time) { Speed = 10 * 1024 * 1024 };
        Assert.Equal(TimeSpan.Zero, r.Reserve(1024 * 1024));
        var wait = r.Reserve(1);
        Assert.True(wait > TimeSpan.Zero && wait <= TimeSpan.FromMilliseconds(100), wait.ToString());
        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(TimeSpan.Zero, r.Reserve(1024 * 1024));
    }

    /// <summary>A chunk worth ten slices of quota is followed by a wait of ten slices, as in QEMU's ratelimit.</summary>
    [Fact]
    public void AChunkLargerThanTheQuotaStretchesTheSlice()
    {
        var time = new ManualClock();
        var r = new RateLimiter(time) { Speed = 1024 * 1024 };
        Assert.Equal(TimeSpan.Zero, r.Reserve(1024 * 1024));
        var wait = r.Reserve(1024 * 1024);
        Assert.True(wait > TimeSpan.FromMilliseconds(990) && wait <= TimeSpan.FromMilliseconds(1010), wait.ToString());
        time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.True(r.Reserve(1) > TimeSpan.FromMilliseconds(490));
        time.Advance(TimeSpan.FromMilliseconds(510));
        Assert.Equal(TimeSpan.Zero, r.Reserve(1024 * 1024));
    }

    /// <summary>A new speed applies to the wait already stretched by the old one.</summary>
    [Fact]
    public void ANewSpeedShortensTheWait()
    {
        var time = new ManualClock();
        var r = new RateLimiter(time) { Speed = 1 };
        Assert.Equal(TimeSpan.Zero, r.Reserve(1024 * 1024));
        Assert.True(r.Reserve(1) > TimeSpan.FromDays(1));
        r.Speed = 10 * 1024 * 1024;
        var wait = r.Reserve(1);
        Assert.True(wait > TimeSpan.FromMilliseconds(90) && wait <= TimeSpan.FromMilliseconds(101), wait.ToString());
        r.Speed = 0;
        Assert.Equal(TimeSpan.Zero, r.Reserve(1));
    }

    /// <summary>Over a long run the bytes let through stay at the speed, whatever the chunk size.</summary>
    [Theory]
    [InlineData(65536)]
    [InlineData(1024 * 1024)]
    [InlineData(4 * 1024 * 1024)]
    public void TheAverageRateIsTheSpeed(int chunk)
    {
        var time = new ManualClock();
        var r = new RateLimiter(time) { Speed = 2 * 1024 * 1024 };
        long sent = 0;
        var elapsed = TimeSpan.Zero;
        while (elapsed < TimeSpan.FromSeconds(60))
        {
            var wait = r.Reserve(chunk);
            if (wait == TimeSpan.Zero)
            {
                sent += chunk;
                continue;
            }

            time.Advance(wait);
            elapsed += wait;
        }

        var rate = sent / elapsed.TotalSeconds;
        Assert.InRange(rate, 1.9 * 1024 * 1024, 2.2 * 1024 * 1024);
    }

    /// <summary>A clock that moves only when told.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
