using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.Block;

public sealed class DataRunCacheTests
{
    [Fact]
    public void AnswersInsideTheRememberedRunOnly()
    {
        var cache = new DataRunCache();
        Assert.Equal(-1, cache.EndOfRunAt(0));

        cache.Remember(4096, 65536, cache.Generation);
        Assert.Equal(65536, cache.EndOfRunAt(4096));
        Assert.Equal(65536, cache.EndOfRunAt(65535));
        Assert.Equal(-1, cache.EndOfRunAt(4095));
        Assert.Equal(-1, cache.EndOfRunAt(65536));
    }

    [Fact]
    public void ForgetDropsTheRunAndWhatALookupAcrossItFound()
    {
        var cache = new DataRunCache();
        cache.Remember(0, 8192, cache.Generation);
        cache.Forget();
        Assert.Equal(-1, cache.EndOfRunAt(0));

        // A lookup that began before a punch must not store what it saw during it.
        var generation = cache.Generation;
        cache.Forget();
        cache.Remember(0, 8192, generation);
        Assert.Equal(-1, cache.EndOfRunAt(0));

        // One that began after it may.
        cache.Remember(0, 8192, cache.Generation);
        Assert.Equal(8192, cache.EndOfRunAt(0));
    }

    [Fact]
    public void KeepsSeveralRunsAndJoinsThoseThatTouchOrOverlap()
    {
        var cache = new DataRunCache();
        cache.Remember(100, 200, cache.Generation);
        cache.Remember(0, 10, cache.Generation);
        cache.Remember(50, 60, cache.Generation);
        Assert.Equal(3, cache.Count);
        Assert.Equal(10, cache.EndOfRunAt(0));
        Assert.Equal(60, cache.EndOfRunAt(55));
        Assert.Equal(200, cache.EndOfRunAt(100));
        Assert.Equal(-1, cache.EndOfRunAt(10));
        Assert.Equal(-1, cache.EndOfRunAt(60));
        Assert.Equal(-1, cache.EndOfRunAt(99));

        // [60, 100) touches both neighbours: one run [50, 200).
        cache.Remember(60, 100, cache.Generation);
        Assert.Equal(2, cache.Count);
        Assert.Equal(200, cache.EndOfRunAt(50));
        Assert.Equal(10, cache.EndOfRunAt(9));

        // A run that grew past what was known replaces the shorter one.
        cache.Remember(5, 300, cache.Generation);
        Assert.Equal(1, cache.Count);
        Assert.Equal(300, cache.EndOfRunAt(0));
        Assert.Equal(300, cache.EndOfRunAt(250));

        cache.Forget();
        Assert.Equal(0, cache.Count);
        Assert.Equal(-1, cache.EndOfRunAt(0));
    }

    [Fact]
    public void StartsOverWhenFull()
    {
        var cache = new DataRunCache();
        for (var i = 0; i < DataRunCache.Capacity; i++)
        {
            cache.Remember(i * 100L, (i * 100L) + 10, cache.Generation);
        }

        Assert.Equal(DataRunCache.Capacity, cache.Count);
        Assert.Equal(1010, cache.EndOfRunAt(1005));

        // Joining a known run needs no room; a new run does.
        cache.Remember(1010, 1020, cache.Generation);
        Assert.Equal(DataRunCache.Capacity, cache.Count);
        Assert.Equal(1020, cache.EndOfRunAt(1000));
        const long past = DataRunCache.Capacity * 100L;
        cache.Remember(past, past + 10, cache.Generation);
        Assert.Equal(1, cache.Count);
        Assert.Equal(past + 10, cache.EndOfRunAt(past));
        Assert.Equal(-1, cache.EndOfRunAt(1000));
    }
}
