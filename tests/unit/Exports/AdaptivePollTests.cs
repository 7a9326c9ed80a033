using ExportServer.Block.Exports;
using Xunit;

namespace ExportServer.UnitTests.Exports;

/// <summary>The adaptive poll time: QEMU's growth from 4 µs, its cap, and both ways of shrinking.</summary>
public sealed class AdaptivePollTests
{
    [Fact]
    public void ShortWaitsGrowThePollFromFourMicrosecondsByDoublingUpToTheMaximum()
    {
        var poll = default(AdaptivePoll);
        var policy = RequestPolling.Default;
        var seen = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            poll.Adjust(policy, 32_500);
            seen.Add(poll.Ns);
        }

        Assert.Equal([4000, 8000, 16000, 32000, 32768, 32768], seen);
    }

    [Fact]
    public void TheMainLoopsMaximumCoversAClientTakingLongerThanQemusIothreadDefault()
    {
        // A client that sends its next request 150 µs after each reply: QEMU's 32 µs maximum never
        // polls for it, the main loop's 200 µs grows to cover it.
        var iothread = default(AdaptivePoll);
        var mainLoop = default(AdaptivePoll);
        var seen = new List<long>();
        for (var i = 0; i < 8; i++)
        {
            iothread.Adjust(RequestPolling.Default, 150_000);
            mainLoop.Adjust(RequestPolling.MainLoopDefault, 150_000);
            Assert.Equal(0, iothread.Ns);
            seen.Add(mainLoop.Ns);
        }

        Assert.Equal([4000, 8000, 16000, 32000, 64000, 128000, 200000, 200000], seen);
        Assert.Equal(RequestPolling.MainLoopDefault, RequestPolling.MainLoop);
    }

    [Fact]
    public void AWaitThePollCoveredChangesNothing()
    {
        var poll = default(AdaptivePoll);
        poll.Adjust(RequestPolling.Default, 10_000);
        poll.Adjust(RequestPolling.Default, 10_000);
        Assert.Equal(8000, poll.Ns);
        poll.Adjust(RequestPolling.Default, 5_000);
        Assert.Equal(8000, poll.Ns);
    }

    [Fact]
    public void AWaitLongerThanTheMaximumStopsPollingUnlessShrinkIsSet()
    {
        var poll = default(AdaptivePoll);
        poll.Adjust(RequestPolling.Default, 10_000);
        poll.Adjust(RequestPolling.Default, 10_000);
        poll.Adjust(RequestPolling.Default, 1_000_000);
        Assert.Equal(0, poll.Ns);

        var halving = new RequestPolling(100_000, 4, 2);
        var other = default(AdaptivePoll);
        other.Adjust(halving, 50_000);
        other.Adjust(halving, 50_000);
        Assert.Equal(16000, other.Ns);
        other.Adjust(halving, 1_000_000);
        Assert.Equal(8000, other.Ns);
    }

    [Fact]
    public void AMaximumOfZeroNeverPolls()
    {
        var poll = default(AdaptivePoll);
        var off = new RequestPolling(0, 0, 0);
        poll.Adjust(off, 1);
        poll.Adjust(off, 0);
        Assert.Equal(0, poll.Ns);
    }
}
