using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="BlockRoot.SwapAsync"/> while requests are in flight: requests that entered before the
/// swap finish on the old node, requests issued during it wait and land on the new node.
/// </summary>
public sealed class BlockRootSwapTests
{
    private const int Size = 64 * 1024;

    [Fact]
    public async Task RequestIssuedDuringTheSwapLandsOnTheNewNode()
    {
        var old = new HeldNode(new MemoryNode("old", Size));
        var replacement = new MemoryNode("new", Size);
        var root = new BlockRoot(old);

        var slowRead = root.ReadAsync(0, new byte[4096]).AsTask();
        await old.ReadEntered.WaitAsync(TimeSpan.FromSeconds(5));
        var swap = root.SwapAsync(replacement).AsTask();
        Assert.False(swap.IsCompleted);

        // Issued while the swap waits for the old node's read: held, not sent to the old node.
        var write = root.WriteAsync(8192, Filled(0x5c, 4096)).AsTask();
        var status = root.GetBlockStatusAsync(0, Size).AsTask();
        await Task.Delay(50);
        Assert.False(write.IsCompleted);
        Assert.All(old.Memory.Data, b => Assert.Equal(0, b));

        old.Release();
        await slowRead.WaitAsync(TimeSpan.FromSeconds(5));
        await swap.WaitAsync(TimeSpan.FromSeconds(5));
        await write.WaitAsync(TimeSpan.FromSeconds(5));
        await status.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Same(replacement, root.Node);
        Assert.Equal(Filled(0x5c, 4096), replacement.Data.AsSpan(8192, 4096).ToArray());
        Assert.All(old.Memory.Data, b => Assert.Equal(0, b));
        Assert.Equal(1, replacement.UserCount);
        Assert.Equal(0, old.UserCount);
    }

    [Fact]
    public async Task SwapWithNothingInFlightIsImmediateAndLaterRequestsGoToTheNewNode()
    {
        var first = new MemoryNode("a", Size);
        var second = new MemoryNode("b", Size);
        var third = new MemoryNode("c", Size);
        var root = new BlockRoot(first);
        var swaps = Task.WhenAll(root.SwapAsync(second).AsTask(), root.SwapAsync(third).AsTask());
        await swaps.WaitAsync(TimeSpan.FromSeconds(5));
        await root.WriteAsync(0, Filled(0x11, 512));
        Assert.Same(third, root.Node);
        Assert.Equal(0x11, third.Data[0]);
        Assert.Equal(0, first.Data[0]);
        Assert.Equal(0, second.Data[0]);
    }

    private static byte[] Filled(byte value, int length)
    {
        var b = new byte[length];
        Array.Fill(b, value);
        return b;
    }
}
