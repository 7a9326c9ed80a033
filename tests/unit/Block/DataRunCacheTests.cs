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
}
