using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Stream;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="LayerCopyJob"/> on an in-memory [A] &lt;- [B] &lt;- [C] &lt;- [D]: what stream and
/// intermediate commit copy, into which layer, and that a guest write during a stream survives it.
/// </summary>
public sealed class StreamJobTests
{
    private const int Size = 256 * 1024;
    private const int K = 1024;

    private sealed record Chain(StreamLayer A, StreamLayer B, StreamLayer C, StreamLayer D)
    {
        public async Task<byte[]> ReadAsync()
        {
            var data = new byte[Size];
            await D.ReadAsync(0, data);
            return data;
        }
    }

    private static async Task<Chain> BuildAsync()
    {
        var a = new StreamLayer("A", Size);
        var b = new StreamLayer("B", Size);
        var c = new StreamLayer("C", Size);
        var d = new StreamLayer("D", Size);
        await b.SetBackingAsync(a);
        await c.SetBackingAsync(b);
        await d.SetBackingAsync(c);
        await a.WriteAsync(0, Filled(0xa1, 128 * K));
        await b.WriteAsync(16 * K, Filled(0xb2, 32 * K));
        await c.WriteAsync(32 * K, Filled(0xc3, 32 * K));
        await d.WriteAsync(40 * K, Filled(0xd4, 4 * K));
        return new Chain(a, b, c, d);
    }

    private static byte[] Filled(byte value, int length) => Enumerable.Repeat(value, length).ToArray();

    private static void AssertOwn(StreamLayer layer, int offsetK, int lengthK, byte value) =>
        Assert.All(layer.Own(offsetK * K, lengthK * K).ToArray(), b => Assert.Equal(value, b));

    [Fact]
    public async Task StreamDownToACopiesWhatBAndCHoldIntoD()
    {
        var chain = await BuildAsync();
        var before = await chain.ReadAsync();
        var finished = false;
        var job = new LayerCopyJob(chain.D, chain.D, new LayerCopySettings(
            "stream", From: 2, Until: ChainScan.DepthOf(chain.D, chain.A), GuardWrites: true, Granularity: StreamLayer.Cluster,
            Finish: () =>
            {
                finished = true;
                return ValueTask.CompletedTask;
            }));
        var control = new JobControl();
        await job.RunAsync(control);
        await job.CommitAsync();
        await job.CleanAsync();

        Assert.True(finished);
        Assert.Equal(before, await chain.ReadAsync());
        AssertOwn(chain.D, 16, 16, 0xb2);
        AssertOwn(chain.D, 32, 8, 0xc3);
        AssertOwn(chain.D, 40, 4, 0xd4);
        AssertOwn(chain.D, 44, 20, 0xc3);

        // A's own data stays below (the base is never copied). Progress covers the whole image, as QEMU's.
        Assert.False(chain.D.IsAllocated(0));
        Assert.False(chain.D.IsAllocated(100 * K));
        Assert.Equal(Size, control.Length);
        Assert.Equal(Size, control.Offset);
        Assert.Equal(0, chain.D.UserCount);
    }

    [Fact]
    public async Task CommitOfCIntoACopiesBAndCIntoA()
    {
        var chain = await BuildAsync();
        var before = await chain.ReadAsync();
        var job = new LayerCopyJob(chain.C, chain.A, new LayerCopySettings("commit", From: 1, Until: ChainScan.DepthOf(chain.C, chain.A)));
        var control = new JobControl();
        await job.RunAsync(control);
        await job.CleanAsync();
        Assert.Equal(Size, control.Length);
        Assert.Equal(Size, control.Offset);

        AssertOwn(chain.A, 0, 16, 0xa1);
        AssertOwn(chain.A, 16, 16, 0xb2);
        AssertOwn(chain.A, 32, 32, 0xc3);
        AssertOwn(chain.A, 64, 64, 0xa1);
        Assert.Equal(before, await chain.ReadAsync());
        AssertOwn(chain.D, 40, 4, 0xd4);
        Assert.False(chain.D.IsAllocated(16 * K));
    }

    [Fact]
    public async Task AGuestWriteDuringAStreamIsNeverOverwritten()
    {
        var chain = await BuildAsync();
        var before = await chain.ReadAsync();
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var job = new LayerCopyJob(chain.D, chain.D, new LayerCopySettings("stream", From: 2, Until: 0, GuardWrites: true));
        control.Pause();
        var run = job.RunAsync(control);
        await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // Paused before its first copy: the write first copies the 64 KiB granule under it into D.
        Assert.False(chain.D.IsAllocated(20 * K));
        await chain.D.WriteAsync(20 * K, Filled(0xee, 4 * K));
        AssertOwn(chain.D, 16, 4, 0xb2);
        AssertOwn(chain.D, 20, 4, 0xee);
        control.Resume();
        await run;
        await job.CleanAsync();

        Filled(0xee, 4 * K).CopyTo(before, 20 * K);
        Assert.Equal(before, await chain.ReadAsync());
        AssertOwn(chain.D, 20, 4, 0xee);
        AssertOwn(chain.D, 100, 4, 0xa1);
    }
}
