using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="JobGroup"/> as QEMU's JobTxn: jobs of a group become pending together once all are
/// done, are finalised newest first, and end together when one fails; job-finalize of one
/// finalises all. The bodies are calls the test lets finish.
/// </summary>
public sealed class JobGroupTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task DoneJobsWaitForTheLastThenAllFinaliseNewestFirst()
    {
        var (events, a, b) = Group();
        a.Finish.SetResult();
        await events.Reached(JobStatus.Waiting).WaitAsync(Patience);
        Assert.Equal(JobStatus.Waiting, a.Job.Status);
        Assert.Equal(JobStatus.Running, b.Job.Status);

        b.Finish.SetResult();
        await Both(events, a, b);
        Assert.Equal(
            [
                "a created", "b created", "a running", "b running", "a waiting", "b waiting",
                "b pending", "a pending",
                "b ended:completed", "b concluded", "b null", "a ended:completed", "a concluded", "a null",
            ],
            events.Log);
    }

    [Fact]
    public async Task OneFailureCancelsTheOthersAndAllEndTogether()
    {
        var (events, a, b) = Group();
        a.Finish.SetResult();
        await events.Reached(JobStatus.Waiting).WaitAsync(Patience);
        b.Finish.SetException(BlockException.Invalid("boom"));
        await Both(events, a, b);
        Assert.Equal(
            [
                "a created", "b created", "a running", "b running", "a waiting", "b aborting",
                "b ended:completed:boom", "b concluded", "b null", "a aborting", "a ended:cancelled", "a concluded", "a null",
            ],
            events.Log);
    }

    [Fact]
    public async Task OneJobWaitingForFinalizeHoldsTheGroupAndFinalizingAnyEndsAll()
    {
        var (events, a, b) = Group(autoFinalizeA: false);
        a.Finish.SetResult();
        b.Finish.SetResult();
        await events.Reached(JobStatus.Pending).WaitAsync(Patience);
        await WaitUntil(() => a.Job.Status == JobStatus.Pending && b.Job.Status == JobStatus.Pending);

        await b.Job.FinalizeAsync();
        await Both(events, a, b);
        Assert.Equal(["b pending", "a pending", "b ended:completed", "b concluded", "b null", "a ended:completed", "a concluded", "a null"], events.Log.Skip(6));
    }

    [Fact]
    public async Task CancellingAPendingJobAbortsTheGroup()
    {
        var (events, a, b) = Group(autoFinalizeA: false);
        a.Finish.SetResult();
        b.Finish.SetResult();
        await WaitUntil(() => a.Job.Status == JobStatus.Pending && b.Job.Status == JobStatus.Pending);

        a.Job.Cancel(force: true);
        await Both(events, a, b);
        Assert.Equal(
            ["b pending", "a pending", "b aborting", "b ended:cancelled", "b concluded", "b null", "a aborting", "a ended:cancelled", "a concluded", "a null"],
            events.Log.Skip(6));
    }

    private sealed record Member(Job Job, TaskCompletionSource Finish);

    /// <summary>Jobs a then b in one group, started; each body ends when its Finish does.</summary>
    private static (RecordingJobEvents Events, Member A, Member B) Group(bool autoFinalizeA = true)
    {
        var events = new RecordingJobEvents(ids: true);
        var jobs = new JobRegistry(events);
        var group = new JobGroup();
        var members = new List<Member>();
        foreach (var (id, autoFinalize) in new[] { ("a", autoFinalizeA), ("b", true) })
        {
            var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var job = jobs.Reserve(id, new DelegateJob("backup", async () => await finish.Task), autoFinalize);
            job.JoinGroup(group);
            job.Create();
            members.Add(new Member(job, finish));
        }

        foreach (var m in members)
        {
            m.Job.Start();
        }

        return (events, members[0], members[1]);
    }

    private static async Task Both(RecordingJobEvents events, Member a, Member b) =>
        await WaitUntil(() => a.Job.Status == JobStatus.Null && b.Job.Status == JobStatus.Null);

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the jobs did not get there");
            await Task.Delay(5);
        }
    }
}
