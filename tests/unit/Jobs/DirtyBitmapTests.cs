using ExportServer.Block.Bitmaps;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

public sealed class DirtyBitmapTests
{
    [Fact]
    public void SetMarksEveryTouchedGranuleAndCountsClippedBytes()
    {
        var b = new DirtyBitmap(10_000, 4096);
        b.Set(4095, 2);
        Assert.True(b.IsDirty(0));
        Assert.True(b.IsDirty(4096));
        Assert.False(b.IsDirty(8192));
        Assert.Equal(8192, b.DirtyBytes);
        b.Set(9000, 1);
        Assert.Equal(8192 + (10_000 - 8192), b.DirtyBytes);
    }

    [Fact]
    public void NextDirtyFindsRunsLimitedToMaxLength()
    {
        var b = new DirtyBitmap(1 << 20, 4096);
        b.Set(65536, 5 * 4096);
        Assert.Equal((65536L, 2 * 4096L), b.NextDirty(0, 2 * 4096));
        Assert.Equal((65536L + 4096, 4 * 4096L), b.NextDirty(65536 + 4096, 1 << 20));
        Assert.Null(b.NextDirty(65536 + 5 * 4096, 1 << 20));
    }

    [Fact]
    public void ClaimClearsAndReturnsOnlyDirtyRuns()
    {
        var b = new DirtyBitmap(64 * 1024, 4096);
        b.Set(0, 4096);
        b.Set(3 * 4096, 2 * 4096);
        var runs = b.Claim(0, 8 * 4096);
        Assert.Equal([(0L, 4096L), (3 * 4096L, 2 * 4096L)], runs);
        Assert.True(b.IsEmpty);
        Assert.Empty(b.Claim(0, 64 * 1024));
    }

    [Fact]
    public void GranularityMustBeAPowerOfTwo()
    {
        Assert.Throws<ArgumentException>(() => new DirtyBitmap(1000, 3000));
        Assert.Throws<ArgumentException>(() => new DirtyBitmap(1000, 256));
    }
}
