using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Mirror;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// Mirror's copy-mode=write-blocking on in-memory nodes: a write reaches the target before it
/// completes where the job had made the target clean or the write covers whole granules, even with
/// the job paused; a partial write into a granule still to be copied is left to the background pass.
/// </summary>
public sealed class MirrorWriteBlockingTests
{
    private const int Size = 1024 * 1024;
    private const int Granule = 64 * 1024;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AfterReadyAWriteIsOnTheTargetWhenItReturnsOnlyInWriteBlockingMode(bool writeBlocking)
    {
        var source = new MemoryNode("src", Filled(0x11, Size));
        var target = new MemoryNode("tgt", Size);
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var job = new MirrorJob(source, target, new MirrorSettings(SyncMode.Full, Granule, WriteBlocking: writeBlocking));
        var run = job.RunAsync(control);
        await observer.ReadySignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(source.Data, target.Data);

        // Paused, the background pass copies nothing: only the write itself can bring the data over.
        control.Pause();
        await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await source.WriteAsync(100 * 1024, Filled(0x77, 4096));
        await source.WriteAsync(Granule * 4, Filled(0x78, Granule));
        Assert.Equal(writeBlocking, source.Data.AsSpan().SequenceEqual(target.Data));

        control.Resume();
        control.Cancel(force: false);
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        await job.CleanAsync();
        Assert.Equal(source.Data, target.Data);
    }

    [Fact]
    public async Task APartialWriteIntoAGranuleStillToCopyIsLeftToTheBackgroundPass()
    {
        var source = new MemoryNode("src", Filled(0x11, Size));
        var target = new MemoryNode("tgt", Size);
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var job = new MirrorJob(source, target, new MirrorSettings(SyncMode.Full, Granule, WriteBlocking: true));

        // Paused before the first copy: every granule is dirty.
        control.Pause();
        var run = job.RunAsync(control);
        await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await source.WriteAsync(4096, Filled(0x55, 4096));
        await source.WriteAsync(2 * Granule, Filled(0x66, Granule));
        Assert.All(target.Data.AsSpan(0, Granule).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(Filled(0x66, Granule), target.Data.AsSpan(2 * Granule, Granule).ToArray());
        Assert.All(target.Data.AsSpan(3 * Granule).ToArray(), b => Assert.Equal(0, b));

        control.Resume();
        await observer.ReadySignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        control.Cancel(force: false);
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        await job.CleanAsync();
        Assert.Equal(source.Data, target.Data);
    }

    private static byte[] Filled(byte value, int length) => Enumerable.Repeat(value, length).ToArray();
}
