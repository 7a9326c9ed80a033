using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>A write-through root (an export's writethrough=on) makes every write reach stable storage.</summary>
public sealed class WriteThroughTests
{
    private static readonly byte[] Data = Enumerable.Repeat((byte)7, 4096).ToArray();

    [Fact]
    public async Task AWriteReachesADriverWithFuaAsFua()
    {
        var driver = new CallLogNode(1 << 20, fua: true);
        await using var root = new BlockRoot(driver) { WriteThrough = true };

        await root.WriteAsync(0, Data);

        Assert.Equal(["write 0+4096 Fua"], driver.Calls);
    }

    [Fact]
    public async Task AWriteIsFollowedByAFlushWhenTheDriverHasNoFua()
    {
        var driver = new CallLogNode(1 << 20, fua: false);
        await using var root = new BlockRoot(driver) { WriteThrough = true };

        await root.WriteAsync(0, Data);
        await root.WriteAsync(4096, Data);

        Assert.Equal(["write 0+4096 None", "flush", "write 4096+4096 None", "flush"], driver.Calls);
    }

    [Fact]
    public async Task WriteZeroesIsFlushedToo()
    {
        var driver = new CallLogNode(1 << 20, fua: false);
        await using var root = new BlockRoot(driver) { WriteThrough = true };

        await root.WriteZeroesAsync(0, 65536, ZeroFlags.MayUnmap);

        Assert.Equal(["zero 0+65536 MayUnmap", "flush"], driver.Calls);
    }

    [Fact]
    public async Task WriteZeroesTakesFuaToADriverThatHasIt()
    {
        var driver = new CallLogNode(1 << 20, fua: true);
        await using var root = new BlockRoot(driver) { WriteThrough = true };

        await root.WriteZeroesAsync(0, 65536);

        Assert.Equal(["zero 0+65536 Fua"], driver.Calls);
    }

    [Fact]
    public async Task WriteBackLeavesWritesInTheCache()
    {
        var driver = new CallLogNode(1 << 20, fua: false);
        await using var root = new BlockRoot(driver);

        await root.WriteAsync(0, Data);
        await root.WriteZeroesAsync(0, 65536);

        Assert.Equal(["write 0+4096 None", "zero 0+65536 None"], driver.Calls);
    }
}
