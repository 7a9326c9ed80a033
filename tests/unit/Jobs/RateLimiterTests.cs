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

    /// <summary>A clock that moves only when told.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
