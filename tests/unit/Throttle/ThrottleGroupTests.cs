using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Filters.Throttle;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Throttle;

/// <summary>Throttle groups and the throttle filter on a clock the test moves: waits are timers, not threads.</summary>
public sealed class ThrottleGroupTests
{
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    private static ThrottleGroup Group(FakeTimeProvider time, ThrottleBucketKind kind, ulong avg)
    {
        var c = new ThrottleConfig();
        c.Avg[(int)kind] = avg;
        return new ThrottleGroup("g", c, time);
    }

    [Fact]
    public async Task RequestsBeyondTheBucketWaitForTheTimerInArrivalOrder()
    {
        var time = new FakeTimeProvider();
        using var g = Group(time, ThrottleBucketKind.IopsTotal, 50);
        for (var i = 0; i < 6; i++)
        {
            Assert.True(g.WaitAsync(4096, false).IsCompletedSuccessfully);
        }

        var order = new List<int>();
        var waits = Enumerable.Range(0, 3).Select(async i =>
        {
            await g.WaitAsync(4096, i == 1);
            lock (order)
            {
                order.Add(i);
            }
        }).ToArray();
        Assert.All(waits, w => Assert.False(w.IsCompleted));
        Assert.True(time.HasPendingTimer);

        // One operation leaks every 20 ms; the total bucket is shared, so one request goes per 20 ms.
        time.Advance(19 * Ms);
        await Task.Delay(20);
        Assert.Empty(order);
        time.Advance(1 * Ms);
        await waits[0].WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(waits[2].IsCompleted);
        time.Advance(40 * Ms);
        await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(order.IndexOf(0) < order.IndexOf(2));
        Assert.False(time.HasPendingTimer);
    }

    [Fact]
    public async Task NodesOfOneGroupShareItsBuckets()
    {
        var time = new FakeTimeProvider();
        var g = Group(time, ThrottleBucketKind.IopsTotal, 10);
        var a = new ThrottleNode("a", false, new MemoryNode("ma", 1 << 20), g);
        var b = new ThrottleNode("b", false, new MemoryNode("mb", 1 << 20), g);
        Assert.Equal(2, g.MemberCount);

        // The bucket of 10/10 = 1 operation lets two requests through; the third, on the other node, waits.
        await a.ReadAsync(0, new byte[512]);
        await b.WriteAsync(0, new byte[512]);
        var third = a.ReadAsync(0, new byte[512]).AsTask();
        Assert.False(third.IsCompleted);
        time.Advance(100 * Ms);
        await third.WaitAsync(TimeSpan.FromSeconds(5));

        await a.DisposeAsync();
        Assert.Equal(1, g.MemberCount);
        await b.DisposeAsync();
        Assert.Equal(0, g.MemberCount);
    }

    [Fact]
    public async Task FilterPassesDataThroughAndThrottlesWritesZeroesAndDiscards()
    {
        var time = new FakeTimeProvider();
        var g = Group(time, ThrottleBucketKind.BpsWrite, 1000);
        var child = new MemoryNode("m", 1 << 20);
        await using var t = new ThrottleNode("t", false, child, g);
        Assert.Equal(child.Length, t.Length);
        Assert.Equal("throttle", t.DriverName);
        Assert.Same(child, t.FileChild!.Node);

        var data = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
        await t.WriteAsync(8192, data);
        Assert.Equal(data, child.Data.AsSpan(8192, 4096).ToArray());

        // Writes have used the bucket: zero writes and discards wait like writes, reads and flushes do not.
        var zero = t.WriteZeroesAsync(8192, 512).AsTask();
        var discard = t.DiscardAsync(0, 4096).AsTask();
        Assert.False(zero.IsCompleted);
        Assert.False(discard.IsCompleted);
        var back = new byte[4096];
        await t.ReadAsync(8192, back).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(data, back);
        await t.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));

        time.Advance(TimeSpan.FromSeconds(10));
        await Task.WhenAll(zero, discard).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.All(child.Data.AsSpan(8192, 512).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void GroupInUseCannotBeDeleted()
    {
        var objects = new NamedObjects();
        new ThrottleGroups().Add(objects, "g", new OptionReader(new JsonObject { ["x-iops-total"] = 5 }));
        var group = objects.TryGet<ThrottleGroup>("g")!;
        group.AddMember();
        var e = Assert.Throws<BlockException>(() => new ThrottleGroups().TryDelete(objects, "g"));
        Assert.Equal("object 'g' is in use, can not be deleted", e.Message);
        group.RemoveMember();
        Assert.True(new ThrottleGroups().TryDelete(objects, "g"));
        Assert.False(new ThrottleGroups().TryDelete(objects, "g"));
        Assert.Null(objects.TryGet<ThrottleGroup>("g"));
    }
}
