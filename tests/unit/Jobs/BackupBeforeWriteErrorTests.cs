using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// Backup's copy-before-write when the target fails (QEMU's copy-before-write filter with
/// on-cbw-error=break-guest-write): the guest's write fails at once with the target's error and
/// leaves the source as it was; the job is neither paused nor failed, whatever its policy, and
/// once the target recovers the same write goes through with the old data backed up first.
/// </summary>
public sealed class BackupBeforeWriteErrorTests
{
    private const int Size = 1024 * 1024;
    private const int Cluster = 64 * 1024;
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(5);

    [Theory]
    [InlineData(ErrorPolicy.Stop)]
    [InlineData(ErrorPolicy.Report)]
    public async Task AFailedCopyFailsTheGuestWriteAndNotTheJob(ErrorPolicy onTargetError)
    {
        var source = new MemoryNode("src", Enumerable.Repeat((byte)0x11, Size).ToArray());
        var target = new FailingNode(new MemoryNode("tgt", Size));
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var job = new BackupJob(source, target, SyncMode.None, new CopyOptions(BackupJob.ChunkSize, BackupJob.MaxInFlight, OnTargetError: onTargetError));
        job.Attach(control);
        var run = job.RunAsync(control);

        target.FailWith = Errno.EIO;
        var write = source.WriteAsync(3 * Cluster, Enumerable.Repeat((byte)0x22, Cluster).ToArray()).AsTask();
        var error = await Assert.ThrowsAsync<BlockException>(() => write.WaitAsync(Prompt));
        Assert.Equal(Errno.EIO, error.Errno);
        Assert.All(source.Data.AsSpan(3 * Cluster, Cluster).ToArray(), b => Assert.Equal(0x11, b));
        Assert.Empty(observer.Errors);
        Assert.False(control.PauseRequested);
        Assert.False(run.IsCompleted);

        target.FailWith = null;
        await source.WriteAsync(3 * Cluster, Enumerable.Repeat((byte)0x22, Cluster).ToArray()).AsTask().WaitAsync(Prompt);
        Assert.All(target.Memory.Data.AsSpan(3 * Cluster, Cluster).ToArray(), b => Assert.Equal(0x11, b));
        Assert.All(source.Data.AsSpan(3 * Cluster, Cluster).ToArray(), b => Assert.Equal(0x22, b));

        control.Cancel(force: true);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(Prompt));
        await job.CleanAsync();
    }
}
