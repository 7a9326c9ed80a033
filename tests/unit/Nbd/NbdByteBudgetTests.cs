using ExportServer.Nbd.Server;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

public sealed class NbdByteBudgetTests
{
    private const long Limit = 1000;

    [Fact]
    public async Task GrantsWhatFitsAndHoldsTheRestUntilReleased()
    {
        var budget = new NbdByteBudget(Limit);
        var a = new NbdByteBudget.Account();
        await budget.AcquireAsync(a, 600);
        await budget.AcquireAsync(a, 400);
        var third = budget.AcquireAsync(a, 1).AsTask();
        Assert.False(third.IsCompleted);
        Assert.Equal(Limit, budget.Used);

        budget.Release(a, 400);
        await third.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(601, budget.Used);
    }

    [Fact]
    public async Task AConnectionWithNothingInFlightIsNeverHeld()
    {
        var budget = new NbdByteBudget(Limit);
        var hog = new NbdByteBudget.Account();
        var other = new NbdByteBudget.Account();
        await budget.AcquireAsync(hog, Limit);

        // Larger than the whole budget and nothing of its own in flight: granted at once.
        var first = budget.AcquireAsync(other, 5000);
        Assert.True(first.IsCompleted);

        // Its next request waits, and is granted once its own first one is back, though the hog keeps its share.
        var second = budget.AcquireAsync(other, 10).AsTask();
        Assert.False(second.IsCompleted);
        budget.Release(other, 5000);
        await second.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(Limit + 10, budget.Used);
    }

    [Fact]
    public async Task WaitersAreServedInTheOrderTheyAsked()
    {
        var budget = new NbdByteBudget(Limit);
        var holder = new NbdByteBudget.Account();
        var big = new NbdByteBudget.Account();
        var small = new NbdByteBudget.Account();
        await budget.AcquireAsync(holder, 900);
        await budget.AcquireAsync(big, 50);
        await budget.AcquireAsync(small, 40);

        var bigNext = budget.AcquireAsync(big, 800).AsTask();
        var smallNext = budget.AcquireAsync(small, 5).AsTask();
        Assert.False(bigNext.IsCompleted);

        // 5 bytes would fit now, but the larger request asked first: the smaller one waits behind it.
        Assert.False(smallNext.IsCompleted);

        budget.Release(holder, 900);
        await Task.WhenAll(bigNext, smallNext).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(50 + 40 + 800 + 5, budget.Used);
    }

    [Fact]
    public async Task AnAccountWithAHigherLimitFillsTheBudgetFurther()
    {
        var budget = new NbdByteBudget(Limit);
        var local = new NbdByteBudget.Account();
        var remote = new NbdByteBudget.Account { Limit = 3 * Limit };
        await budget.AcquireAsync(local, 10);
        await budget.AcquireAsync(remote, 900);

        // Past the budget's own limit: the remote account's request is granted, the local one's waits.
        Assert.True(budget.AcquireAsync(remote, 1500).IsCompleted);
        var localNext = budget.AcquireAsync(local, 100).AsTask();
        Assert.False(localNext.IsCompleted);
        Assert.False(budget.AcquireAsync(remote, 700).IsCompleted);

        // The remote account gives back enough for its own waiter, not for the local one's; the local
        // one asked first, so both wait until the total is under the budget's own limit again.
        budget.Release(remote, 1500);
        Assert.False(localNext.IsCompleted);
        budget.Release(remote, 900);
        await localNext.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(10 + 100 + 700, budget.Used);
    }
}
