using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

public sealed class BlockNodeTests
{
    [Fact]
    public async Task UnalignedWriteIsReadModifyWriteOfAlignedBlocks()
    {
        var node = new MemoryNode("m", 4096, alignment: 512);
        new Random(1).NextBytes(node.Data);
        var before = (byte[])node.Data.Clone();
        var payload = Enumerable.Repeat((byte)0xAB, 700).ToArray();

        await node.WriteAsync(300, payload);

        var expected = (byte[])before.Clone();
        payload.CopyTo(expected, 300);
        Assert.Equal(expected, node.Data);
    }

    [Fact]
    public async Task UnalignedReadReturnsExactBytes()
    {
        var node = new MemoryNode("m", 4096, alignment: 512);
        new Random(2).NextBytes(node.Data);
        var buf = new byte[1000];

        await node.ReadAsync(777, buf);

        Assert.Equal(node.Data.AsSpan(777, 1000).ToArray(), buf);
    }

    [Fact]
    public async Task ConcurrentUnalignedWritesToOneBlockDoNotLoseData()
    {
        var node = new MemoryNode("m", 4096, alignment: 4096);
        var tasks = Enumerable.Range(0, 64).Select(i => node.WriteAsync(i * 64, Enumerable.Repeat((byte)(i + 1), 64).ToArray()).AsTask());
        await Task.WhenAll(tasks);
        for (var i = 0; i < 64; i++)
        {
            Assert.All(node.Data.AsSpan(i * 64, 64).ToArray(), b => Assert.Equal((byte)(i + 1), b));
        }
    }

    [Fact]
    public async Task WritesToReadOnlyNodeFailWithEperm()
    {
        var node = new MemoryNode("m", 4096, readOnly: true);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[1]).AsTask());
        Assert.Equal(Errno.EPERM, e.Errno);
        e = await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(0, 1).AsTask());
        Assert.Equal(Errno.EPERM, e.Errno);
        e = await Assert.ThrowsAsync<BlockException>(() => node.DiscardAsync(0, 4096).AsTask());
        Assert.Equal(Errno.EPERM, e.Errno);
    }

    [Theory]
    [InlineData(4090, 7)]
    [InlineData(4097, 0)]
    [InlineData(-1, 1)]
    public async Task OutOfRangeRequestsFail(long offset, int length)
    {
        var node = new MemoryNode("m", 4096);
        await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(offset, new byte[length]).AsTask());
        await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(offset, new byte[length]).AsTask());
    }

    [Fact]
    public async Task WriteZeroesWithUnalignedEdges()
    {
        var node = new MemoryNode("m", 8192, alignment: 512);
        Array.Fill(node.Data, (byte)0xFF);

        await node.WriteZeroesAsync(100, 5000);

        Assert.All(node.Data.AsSpan(0, 100).ToArray(), b => Assert.Equal(0xFF, b));
        Assert.All(node.Data.AsSpan(100, 5000).ToArray(), b => Assert.Equal(0, b));
        Assert.All(node.Data.AsSpan(5100).ToArray(), b => Assert.Equal(0xFF, b));
    }

    [Fact]
    public async Task FuaWithoutDriverSupportFlushes()
    {
        var node = new MemoryNode("m", 4096);
        await node.WriteAsync(0, new byte[10], WriteFlags.Fua);
        Assert.Equal(1, node.FlushCount);
    }

    [Fact]
    public async Task StatisticsCountRequests()
    {
        var node = new MemoryNode("m", 4096);
        await node.WriteAsync(0, new byte[10]);
        await node.ReadAsync(0, new byte[20]);
        Assert.Equal(1, node.Stats.WriteOps);
        Assert.Equal(10, node.Stats.WriteBytes);
        Assert.Equal(20, node.Stats.ReadBytes);
    }
}
