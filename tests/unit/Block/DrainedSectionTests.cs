using ExportServer.Block.Core;
using ExportServer.UnitTests.Jobs;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>
/// Drained sections: new requests to the node and its parents wait while one is open, requests
/// already in flight finish first, and the held ones go on in the order they arrived.
/// </summary>
public sealed class DrainedSectionTests
{
    private const int Size = 64 * 1024;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task NewRequestsWaitAndAreReleasedInArrivalOrder()
    {
        var node = new RecordingNode(new MemoryNode("m", Size));
        var section = await node.BeginDrainedSectionAsync();
        Assert.True(node.IsQuiesced);

        var offsets = new long[] { 8192, 0, 4096, 12288, 16384, 512 };
        var writes = offsets.Select(o => node.WriteAsync(o, new byte[512]).AsTask()).ToArray();
        var read = node.ReadAsync(0, new byte[512]).AsTask();
        await Task.Yield();
        Assert.All(writes, w => Assert.False(w.IsCompleted));
        Assert.False(read.IsCompleted);
        Assert.Empty(node.Writes);

        section.Dispose();
        await Task.WhenAll(writes).WaitAsync(Wait);
        await read.WaitAsync(Wait);
        Assert.False(node.IsQuiesced);
        Assert.Equal(offsets, node.Writes);
    }

    [Fact]
    public async Task SectionOnAChildHoldsItsParentsAndWaitsForTheirRequestsInFlight()
    {
        var held = new HeldNode(new MemoryNode("m", Size));
        var root = new BlockRoot(held);
        var inFlight = root.ReadAsync(0, new byte[4096]).AsTask();
        await held.ReadEntered.WaitAsync(Wait);

        var begin = held.BeginDrainedSectionAsync().AsTask();
        Assert.False(begin.IsCompleted);
        Assert.True(root.IsQuiesced);
        var late = root.WriteAsync(0, new byte[] { 1 }).AsTask();

        held.Release();
        await inFlight.WaitAsync(Wait);
        var section = await begin.WaitAsync(Wait);
        Assert.False(late.IsCompleted);
        Assert.Equal(0, held.Memory.Data[0]);

        section.Dispose();
        await late.WaitAsync(Wait);
        Assert.Equal(1, held.Memory.Data[0]);
    }

    [Fact]
    public async Task SectionsNestAndTheLastOneReleases()
    {
        var node = new MemoryNode("m", Size);
        var outer = await node.BeginDrainedSectionAsync();
        var inner = await node.BeginDrainedSectionAsync();
        var write = node.WriteAsync(0, new byte[] { 7 }).AsTask();

        inner.Dispose();
        inner.Dispose();
        await Task.Yield();
        Assert.False(write.IsCompleted);
        Assert.True(node.IsQuiesced);

        outer.Dispose();
        await write.WaitAsync(Wait);
        Assert.Equal(7, node.Data[0]);
    }

    [Fact]
    public async Task WorkForARequestInFlightPassesTheSection()
    {
        // A write notifier reading the node it runs on (copy-before-write) must not be held by a
        // section that waits for that very write.
        var node = new MemoryNode("m", Size);
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var proceed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        node.WriteNotifiers.Add(async (n, offset, length) =>
        {
            notified.TrySetResult();
            await proceed.Task;
            await n.ReadAsync(offset, new byte[length]);
        });

        var write = node.WriteAsync(0, new byte[] { 3 }).AsTask();
        await notified.Task.WaitAsync(Wait);
        var begin = node.BeginDrainedSectionAsync().AsTask();
        proceed.SetResult();
        await write.WaitAsync(Wait);
        using var section = await begin.WaitAsync(Wait);
        Assert.Equal(3, node.Data[0]);
    }

    [Fact]
    public async Task ClosingFailsHeldRequests()
    {
        var node = new MemoryNode("m", Size);
        var section = await node.BeginDrainedSectionAsync();
        var write = node.WriteAsync(0, new byte[] { 1 }).AsTask();
        await node.DisposeAsync();
        var e = await Assert.ThrowsAsync<BlockException>(() => write.WaitAsync(Wait));
        Assert.Equal(Errno.ESHUTDOWN, e.Errno);
        section.Dispose();
    }

    /// <summary>
    /// Writers go through a root while the root's child edge is swapped back and forth: no request
    /// fails or is lost, and each block's last write lands whole on the node the root pointed to.
    /// </summary>
    [Fact]
    public async Task EdgesSwapUnderConcurrentIo()
    {
        const int block = 4096;
        var a = new MemoryNode("a", Size);
        var b = new MemoryNode("b", Size);
        var root = new BlockRoot(a);
        using var stop = new CancellationTokenSource();
        var last = new byte[Size / block];
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var buffer = new byte[block];
            for (var gen = 1; !stop.IsCancellationRequested; gen++)
            {
                var k = (w * 4) + (gen % 4);
                Array.Fill(buffer, (byte)gen);
                await root.WriteAsync(k * block, buffer);
                last[k] = (byte)gen;
                await root.ReadAsync(k * block, new byte[block]);
                await Task.Yield();
            }
        })).ToArray();

        for (var i = 0; i < 200; i++)
        {
            await root.SwapAsync(i % 2 == 0 ? b : a);
            Assert.Single(root.Children);
        }

        stop.Cancel();
        await Task.WhenAll(writers).WaitAsync(Wait);
        Assert.Same(a, root.Node);
        Assert.Equal(1, a.UserCount);
        Assert.Equal(0, b.UserCount);
        for (var k = 0; k < last.Length; k++)
        {
            if (last[k] != 0)
            {
                Assert.True(
                    a.Data.AsSpan(k * block, block).ToArray().All(x => x == last[k]) ||
                    b.Data.AsSpan(k * block, block).ToArray().All(x => x == last[k]),
                    $"block {k} lost its last write {last[k]}");
            }
        }
    }

    /// <summary>
    /// A request that ends while a section starts to drain must never be missed: the section would
    /// wait forever for a request that is gone (a snapshot under a guest's writes hung this way).
    /// </summary>
    [Fact]
    public async Task ARequestEndingAsTheDrainBeginsIsNeverMissed()
    {
        var node = new MemoryNode("m", Size);
        using var stop = new CancellationTokenSource();
        var buffer = new byte[512];
        var requests = Task.Factory.StartNew(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    // Completes synchronously unless a section holds the node.
                    node.ReadAsync(0, buffer).AsTask().Wait();
                }
            },
            TaskCreationOptions.LongRunning);
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(3);
            var sections = 0;
            while (DateTime.UtcNow < deadline)
            {
                var section = await node.BeginDrainedSectionAsync().AsTask().WaitAsync(Wait);
                section.Dispose();
                sections++;
            }

            Assert.True(sections > 1000, $"only {sections} sections in 3 s");
        }
        finally
        {
            stop.Cancel();
            await requests.WaitAsync(Wait);
        }
    }
}
