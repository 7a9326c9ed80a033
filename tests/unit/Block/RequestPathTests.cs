using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>The engine's request path as a driver sees it: splitting, zero-write emulation, discard rounding, notifiers.</summary>
public sealed class RequestPathTests
{
    [Fact]
    public async Task WritesAreSplitAtMaxTransferRoundedDownToTheAlignment()
    {
        // 5000 is no multiple of 512: the engine sends at most 4608 bytes a request.
        var node = new CallLogNode(1 << 20, alignment: 512, maxTransfer: 5000);
        await node.WriteAsync(512, new byte[512 * 20]);
        Assert.Equal(["write 512+4608 None", "write 5120+4608 None", "write 9728+1024 None"], node.Calls);
    }

    [Fact]
    public async Task ZeroBuffersWrittenAsFallbackAreSplitToo()
    {
        var node = new CallLogNode(1 << 20, zeroes: false, maxTransfer: 4096);
        await node.WriteZeroesAsync(100, 9000);
        Assert.Equal(["write 100+4096 None", "write 4196+4096 None", "write 8292+808 None"], node.Calls);
    }

    [Fact]
    public async Task ZeroesTheDriverRefusesAreWrittenAsZeroBuffers()
    {
        var node = new CallLogNode(1 << 20) { ZeroesError = BlockException.NotSupported("not here") };
        await node.WriteZeroesAsync(0, 8192);
        Assert.Equal(["write 0+8192 None"], node.Calls);
    }

    [Fact]
    public async Task NoFallbackZeroesTheDriverRefusesFailWithoutWritingData()
    {
        var node = new CallLogNode(1 << 20) { ZeroesError = BlockException.NotSupported("not here") };
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(0, 8192, ZeroFlags.NoFallback).AsTask());
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Empty(node.Calls);
    }

    [Fact]
    public async Task NoFallbackZeroesOnANodeWithoutWriteZeroesFailAtOnce()
    {
        var node = new CallLogNode(1 << 20, zeroes: false);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(0, 8192, ZeroFlags.NoFallback).AsTask());
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Empty(node.Calls);
    }

    [Fact]
    public async Task OtherZeroErrorsAreNotHiddenByTheFallback()
    {
        var node = new CallLogNode(1 << 20) { ZeroesError = BlockException.Io("disk on fire") };
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(0, 8192).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Empty(node.Calls);
    }

    [Theory]
    [InlineData(1000, 10000, "discard 4096+4096")]
    [InlineData(0, 12288, "discard 0+12288")]
    [InlineData(4095, 8194, "discard 4096+8192")]
    public async Task DiscardIsShrunkToWholeGranules(long offset, long length, string expected)
    {
        var node = new CallLogNode(1 << 20, discardGranularity: 4096);
        await node.DiscardAsync(offset, length);
        Assert.Equal([expected], node.Calls);
    }

    [Fact]
    public async Task DiscardSmallerThanAGranuleReachesNoDriverNorNotifier()
    {
        var node = new CallLogNode(1 << 20, discardGranularity: 4096);
        var notified = 0;
        node.WriteNotifiers.Add((_, _, _) =>
        {
            notified++;
            return ValueTask.CompletedTask;
        });
        await node.DiscardAsync(100, 4000);
        await node.DiscardAsync(4097, 4095);
        Assert.Empty(node.Calls);
        Assert.Equal(0, notified);
    }

    [Fact]
    public async Task NotifiersRunInOrderBeforeTheDriverAndWrittenNotifiersAfter()
    {
        var node = new CallLogNode(1 << 20);
        var order = new List<string>();
        WriteNotifier Log(string name) => (_, offset, length) =>
        {
            order.Add($"{name} {offset}+{length} after {node.Calls.Count} calls");
            return ValueTask.CompletedTask;
        };
        node.WriteNotifiers.Add(Log("first"));
        node.WriteNotifiers.Add(Log("second"));
        node.WrittenNotifiers.Add(Log("written"));
        await node.WriteAsync(10, new byte[20]);
        await node.WriteZeroesAsync(100, 50);
        await node.DiscardAsync(200, 5);
        Assert.Equal(
        [
            "first 10+20 after 0 calls", "second 10+20 after 0 calls", "written 10+20 after 1 calls",
            "first 100+50 after 1 calls", "second 100+50 after 1 calls", "written 100+50 after 2 calls",
            "first 200+5 after 2 calls", "second 200+5 after 2 calls", "written 200+5 after 3 calls",
        ], order);
    }

    [Fact]
    public async Task AFailingNotifierFailsTheRequestAndTheDriverIsNotCalled()
    {
        var node = new CallLogNode(1 << 20);
        var later = 0;
        var written = 0;
        node.WriteNotifiers.Add((_, _, _) => ValueTask.FromException(BlockException.Io("copy before write failed")));
        node.WriteNotifiers.Add((_, _, _) =>
        {
            later++;
            return ValueTask.CompletedTask;
        });
        node.WrittenNotifiers.Add((_, _, _) =>
        {
            written++;
            return ValueTask.CompletedTask;
        });

        Assert.Equal(Errno.EIO, (await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[10]).AsTask())).Errno);
        Assert.Equal(Errno.EIO, (await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(0, 10).AsTask())).Errno);
        Assert.Equal(Errno.EIO, (await Assert.ThrowsAsync<BlockException>(() => node.DiscardAsync(0, 10).AsTask())).Errno);
        Assert.Empty(node.Calls);
        Assert.Equal(0, later);
        Assert.Equal(0, written);
        Assert.Equal(3, node.Stats.FailedOps);
    }
}
