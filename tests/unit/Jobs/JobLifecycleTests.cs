using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="Job"/> and <see cref="JobRegistry"/> without a monitor: jobs on in-memory nodes run
/// through QEMU's lifecycle, and every status change and end is reported in order.
/// </summary>
public sealed class JobLifecycleTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ABackupRunsToCompletionAndIsDismissed()
    {
        var events = new RecordingJobEvents();
        var jobs = new JobRegistry(events);
        var source = new MemoryNode("src", Pattern(256 * 1024));
        var target = new MemoryNode("dst", 256 * 1024);

        // The job may run to its end and be dismissed before Start returns: it is found by its id
        // only while it lasts, which the log of its states below shows.
        var job = jobs.Start("b0", new BackupJob(source, target, SyncMode.Full, new CopyOptions()));
        await events.Reached(JobStatus.Null).WaitAsync(Patience);

        Assert.Equal(["created", "running", "waiting", "pending", "ended:completed", "concluded", "null"], events.Log);
        Assert.Equal(source.Data, target.Data);
        Assert.Equal(job.TotalProgress, job.CurrentProgress);
        Assert.Null(job.Error);
        Assert.Null(jobs.TryFind("b0"));
        Assert.Equal(0, source.UserCount);
        Assert.Equal(0, target.UserCount);
        Assert.Equal("Job not found", Assert.Throws<BlockException>(() => jobs.Find("b0")).Message);
    }

    [Fact]
    public async Task WithoutAutoFinalizeAndDismissTheJobWaitsForEachVerb()
    {
        var events = new RecordingJobEvents();
        var jobs = new JobRegistry(events);
        var source = new MemoryNode("src", Pattern(64 * 1024));
        var target = new MemoryNode("dst", 64 * 1024);

        var job = jobs.Start("b1", new BackupJob(source, target, SyncMode.Full, new CopyOptions()), autoFinalize: false, autoDismiss: false);
        await events.Reached(JobStatus.Pending).WaitAsync(Patience);
        Assert.Equal(JobStatus.Pending, job.Status);
        Assert.Equal(
            "Job 'b1' in state 'pending' cannot accept command verb 'dismiss'",
            Assert.Throws<BlockException>(job.Dismiss).Message);

        await job.FinalizeAsync();
        Assert.Equal(JobStatus.Concluded, job.Status);
        Assert.Same(job, jobs.Find("b1"));
        Assert.Equal(
            "Job 'b1' in state 'concluded' cannot accept command verb 'set-speed'",
            Assert.Throws<BlockException>(() => job.SetSpeed(1)).Message);

        job.Dismiss();
        Assert.Equal(["created", "running", "waiting", "pending", "ended:completed", "concluded", "null"], events.Log);
        Assert.Null(jobs.TryFind("b1"));
    }

    [Fact]
    public async Task ACancelledJobAbortsAndReportsTheCancel()
    {
        var events = new RecordingJobEvents();
        var jobs = new JobRegistry(events);
        var source = new MemoryNode("src", 64 * 1024);
        var target = new MemoryNode("dst", 64 * 1024);

        // Sync none copies only before writes, until it is cancelled.
        var job = jobs.Start("b2", new BackupJob(source, target, SyncMode.None, new CopyOptions()));
        job.Pause();
        await events.Reached(JobStatus.Paused).WaitAsync(Patience);
        Assert.Equal("The block job is already paused", Assert.Throws<BlockException>(job.Pause).Message);
        Assert.Equal("Job 'b2' in state 'paused' cannot accept command verb 'complete'", Assert.Throws<BlockException>(job.Complete).Message);

        job.Cancel(force: false);
        await events.Reached(JobStatus.Null).WaitAsync(Patience);
        Assert.Equal(["created", "running", "paused", "running", "aborting", "ended:cancelled", "concluded", "null"], events.Log);
        Assert.Equal("Operation canceled", job.Error);
    }

    [Fact]
    public async Task AFailingJobCompletesWithItsError()
    {
        var events = new RecordingJobEvents();
        var jobs = new JobRegistry(events);
        var source = new MemoryNode("src", 128 * 1024);
        var target = new MemoryNode("dst", 64 * 1024);

        jobs.Start("b3", new BackupJob(source, target, SyncMode.Full, new CopyOptions()));
        await events.Reached(JobStatus.Null).WaitAsync(Patience);
        Assert.Equal(
            ["created", "running", "aborting", "ended:completed:Source and target image have different sizes", "concluded", "null"],
            events.Log);
    }

    /// <summary>
    /// A client that sees a job's null status may start another job under its id at once: the job
    /// has left the registry before the status is reported, dismissed automatically or by job-dismiss.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheIdIsFreeWhenTheNullStatusIsReported(bool autoDismiss)
    {
        JobRegistry? jobs = null;
        var events = new NullWatcher(id => jobs!.TryFind(id) is null);
        jobs = new JobRegistry(events);
        var job = jobs.Start("j", new DelegateJob("create", () => ValueTask.CompletedTask), autoDismiss: autoDismiss);
        if (!autoDismiss)
        {
            await WaitUntil(() => job.Status == JobStatus.Concluded);
            job.Dismiss();
        }

        Assert.True(await events.IdWasFree.Task.WaitAsync(Patience));
    }

    [Fact]
    public void TheRegistryRefusesTakenAndInvalidIdsAndNegativeSpeeds()
    {
        var jobs = new JobRegistry(new RecordingJobEvents());
        var work = () => ValueTask.CompletedTask;
        var reserved = jobs.Reserve("j", new DelegateJob("create", work));
        Assert.Equal("Job ID 'j' already in use", Assert.Throws<BlockException>(() => jobs.Reserve("j", new DelegateJob("create", work))).Message);
        Assert.Equal("Invalid node-name: '1j'", Assert.Throws<BlockException>(() => jobs.Reserve("1j", new DelegateJob("create", work))).Message);
        Assert.Equal(
            "Parameter 'speed' expects a non-negative value",
            Assert.Throws<BlockException>(() => jobs.Reserve("k", new DelegateJob("create", work), speed: -1)).Message);

        jobs.Remove(reserved);
        Assert.Null(jobs.TryFind("j"));
        Assert.Equal(JobStatus.Undefined, reserved.Status);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the job did not get there");
            await Task.Delay(5);
        }
    }

    /// <summary>Records, when a job's null status is reported, whether its id was free by then.</summary>
    private sealed class NullWatcher(Func<string, bool> idIsFree) : IJobEvents
    {
        public TaskCompletionSource<bool> IdWasFree { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void StatusChanged(Job job, JobStatus status)
        {
            if (status == JobStatus.Null)
            {
                IdWasFree.TrySetResult(idIsFree(job.Id));
            }
        }

        public void Ready(Job job)
        {
        }

        public void Error(Job job, bool read, ErrorAction action)
        {
        }

        public void Ended(Job job, bool cancelled)
        {
        }
    }

    private static byte[] Pattern(int length)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(i * 7 + (i >> 12));
        }

        return data;
    }
}
