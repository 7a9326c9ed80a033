using ExportServer.Nbd.Server;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

/// <summary>
/// The NBD buffer pool: sizes are a power of two plus room for a reply header, an array beyond a
/// 32 MiB request is never kept, and arrays left unused through a trim period are let go.
/// </summary>
public sealed class NbdBufferPoolTests
{
    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 512 + NbdBufferPool.Slack)]
    [InlineData(16, 512 + NbdBufferPool.Slack)]
    [InlineData(4096, 4096 + NbdBufferPool.Slack)]
    [InlineData(4096 + 16, 4096 + NbdBufferPool.Slack)]
    [InlineData(4096 + NbdBufferPool.Slack + 1, 8192 + NbdBufferPool.Slack)]
    [InlineData((256 << 10) + 40, (256 << 10) + NbdBufferPool.Slack)]
    [InlineData((4 << 20) + 40, (4 << 20) + NbdBufferPool.Slack)]
    [InlineData((32 << 20) + 16, (32 << 20) + NbdBufferPool.Slack)]
    [InlineData((64 << 20) + 16, (64 << 20) + 16)]
    public void RentGivesThePooledSizeThatHoldsTheRequest(int request, int expected)
    {
        var pool = new NbdBufferPool(Timeout.InfiniteTimeSpan);
        Assert.Equal(expected, pool.Rent(request).Length);
    }

    [Fact]
    public void ReturnedArraysAreReusedAndLargeOnesAreNotKept()
    {
        var pool = new NbdBufferPool(Timeout.InfiniteTimeSpan);
        var small = pool.Rent(4096 + 16);
        pool.Return(small);
        Assert.Same(small, pool.Rent(4096));
        var large = pool.Rent(64 << 20);
        pool.Return(large);
        Assert.Equal(0, pool.RetainedBytes);
        pool.Return(new byte[5000]); // not a pooled size
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Fact]
    public void TrimDropsOnlyWhatStayedUnusedThroughAPeriod()
    {
        var pool = new NbdBufferPool(Timeout.InfiniteTimeSpan);
        var arrays = Enumerable.Range(0, 8).Select(_ => pool.Rent(65536)).ToList();
        arrays.ForEach(a => pool.Return(a));
        Assert.Equal(8L * (65536 + NbdBufferPool.Slack), pool.RetainedBytes);

        pool.Trim(); // the eight were all out during this period: none dropped
        Assert.Equal(8L * (65536 + NbdBufferPool.Slack), pool.RetainedBytes);

        var two = new[] { pool.Rent(65536), pool.Rent(65536) };
        pool.Trim(); // six stayed in the pool the whole period
        Assert.Equal(0, pool.RetainedBytes);
        Array.ForEach(two, a => pool.Return(a));
        Assert.Equal(2L * (65536 + NbdBufferPool.Slack), pool.RetainedBytes);

        pool.Trim();
        Assert.Equal(2L * (65536 + NbdBufferPool.Slack), pool.RetainedBytes);
        pool.Trim(); // unused through a whole period now
        Assert.Equal(0, pool.RetainedBytes);
    }
}
