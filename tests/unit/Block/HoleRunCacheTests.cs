using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.Block;

public sealed class HoleRunCacheTests
{
    [Fact]
    public void AnswersInsideTheRememberedHoleUntilAWrite()
    {
        var cache = new HoleRunCache();
        Assert.Equal(-1, cache.EndOfHoleAt(0));

        cache.Remember(4096, 65536, cache.Writes);
        cache.Remember(1 << 20, 2 << 20, cache.Writes);
        Assert.Equal(65536, cache.EndOfHoleAt(4096));
        Assert.Equal(65536, cache.EndOfHoleAt(65535));
        Assert.Equal(-1, cache.EndOfHoleAt(65536));
        Assert.Equal(2 << 20, cache.EndOfHoleAt(1 << 20));

        cache.Wrote();
        Assert.Equal(-1, cache.EndOfHoleAt(4096));
        Assert.Equal(-1, cache.EndOfHoleAt(1 << 20));
    }

    [Fact]
    public void ALookupAcrossAWriteKeepsNothing()
    {
        var cache = new HoleRunCache();
        var writes = cache.Writes;
        cache.Wrote();
        cache.Remember(0, 8192, writes);
        Assert.Equal(-1, cache.EndOfHoleAt(0));
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void HolesFoundAfterAWriteReplaceThoseFoundBefore()
    {
        var cache = new HoleRunCache();
        cache.Remember(0, 8192, cache.Writes);
        cache.Wrote();

        // The old hole [0, 8192) must not come back with the new stamp.
        cache.Remember(65536, 131072, cache.Writes);
        Assert.Equal(-1, cache.EndOfHoleAt(0));
        Assert.Equal(131072, cache.EndOfHoleAt(65536));
        Assert.Equal(1, cache.Count);
    }
}
