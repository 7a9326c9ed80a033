using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Mirror;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// copy-mode=write-blocking when copying a guest write to the target fails (QEMU's
/// do_sync_target_write): the guest write completes at once with the source's result, the range
/// stays dirty, and the job takes the error under its on-target-error policy without the guest
/// waiting for it.
/// </summary>
public sealed class MirrorWriteBlockingErrorTests
{
    private const int Size = 1024 * 1024;
    private const int Granule = 64 * 1024;
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(5);

    [Theory]
    [InlineData(ErrorPolicy.Stop, Errno.EIO, JobIoStatus.Failed)]
    [InlineData(ErrorPolicy.Enospc, Errno.ENOSPC, JobIoStatus.Nospace)]
    public async Task AStoppingTargetErrorCompletesTheGuestWriteAndPausesTheJob(ErrorPolicy policy, Errno errno, JobIoStatus status)
    {
        var (source, target, observer, control, job, run) = await StartReadyAsync(policy);

        target.FailWith = errno;
        await source.WriteAsync(4 * Granule, Filled(0x77, Granule)).AsTask().WaitAsync(Prompt);
        await observer.PausedSignal.Task.WaitAsync(Prompt);
        Assert.Equal([(false, ErrorAction.Stop)], observer.Errors);
        Assert.Equal(status, control.IoStatus);
        Assert.True(control.PauseRequested);
        Assert.Equal(Granule, control.Length - control.Offset);
        Assert.NotEqual(source.Data, target.Memory.Data);

        // A second failing write while stopped adds no second pause: one resume goes on.
        await source.WriteAsync(6 * Granule, Filled(0x78, Granule)).AsTask().WaitAsync(Prompt);
        target.FailWith = null;
        control.Resume();
        Assert.False(control.PauseRequested);
        Assert.Equal(JobIoStatus.Ok, control.IoStatus);

        control.Cancel(force: false);
        await run.WaitAsync(Prompt);
        await job.CleanAsync();
        Assert.Equal(source.Data, target.Memory.Data);
    }

    [Fact]
    public async Task AReportedTargetErrorCompletesTheGuestWriteAndFailsTheJob()
    {
        var (source, target, observer, _, job, run) = await StartReadyAsync(ErrorPolicy.Report);

        // The target recovers at once: the job fails on the error all the same, as QEMU's does.
        target.FailWith = Errno.EIO;
        await source.WriteAsync(4 * Granule, Filled(0x77, Granule)).AsTask().WaitAsync(Prompt);
        target.FailWith = null;
        var error = await Assert.ThrowsAsync<BlockException>(() => run.WaitAsync(Prompt));
        Assert.Equal(Errno.EIO, error.Errno);
        Assert.Equal([(false, ErrorAction.Report)], observer.Errors);
        await job.CleanAsync();
    }

    [Fact]
    public async Task AnIgnoredTargetErrorLeavesTheRangeToTheBackgroundPass()
    {
        var (source, target, observer, control, job, run) = await StartReadyAsync(ErrorPolicy.Ignore);

        target.FailWith = Errno.EIO;
        await source.WriteAsync(4 * Granule, Filled(0x77, Granule)).AsTask().WaitAsync(Prompt);
        lock (observer.Errors)
        {
            Assert.Contains((false, ErrorAction.Ignore), observer.Errors);
        }

        target.FailWith = null;
        control.Kick();

        control.Cancel(force: false);
        await run.WaitAsync(Prompt);
        await job.CleanAsync();
        Assert.Equal(source.Data, target.Memory.Data);
    }

    private static async Task<(MemoryNode Source, FailingNode Target, RecordingObserver Observer, JobControl Control, MirrorJob Job, Task Run)> StartReadyAsync(ErrorPolicy onTargetError)
    {
        var source = new MemoryNode("src", Filled(0x11, Size));
        var target = new FailingNode(new MemoryNode("tgt", Size));
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var job = new MirrorJob(source, target, new MirrorSettings(SyncMode.Full, Granule, OnTargetError: onTargetError, WriteBlocking: true));
        var run = job.RunAsync(control);
        await observer.ReadySignal.Task.WaitAsync(Prompt);
        return (source, target, observer, control, job, run);
    }

    private static byte[] Filled(byte value, int length) => Enumerable.Repeat(value, length).ToArray();
}
