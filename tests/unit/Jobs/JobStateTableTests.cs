using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>Every cell of the transition and verb tables against the lists QEMU's job.c gives.</summary>
public sealed class JobStateTableTests
{
    private static readonly Dictionary<JobStatus, JobStatus[]> Next = new()
    {
        [JobStatus.Undefined] = [JobStatus.Created],
        [JobStatus.Created] = [JobStatus.Running, JobStatus.Aborting, JobStatus.Null],
        [JobStatus.Running] = [JobStatus.Paused, JobStatus.Ready, JobStatus.Waiting, JobStatus.Aborting],
        [JobStatus.Paused] = [JobStatus.Running],
        [JobStatus.Ready] = [JobStatus.Standby, JobStatus.Waiting, JobStatus.Aborting],
        [JobStatus.Standby] = [JobStatus.Ready],
        [JobStatus.Waiting] = [JobStatus.Pending, JobStatus.Aborting],
        [JobStatus.Pending] = [JobStatus.Aborting, JobStatus.Concluded],
        [JobStatus.Aborting] = [JobStatus.Aborting, JobStatus.Concluded],
        [JobStatus.Concluded] = [JobStatus.Null],
        [JobStatus.Null] = [],
    };

    private static readonly Dictionary<JobVerb, JobStatus[]> Accepting = new()
    {
        [JobVerb.Cancel] = [JobStatus.Created, JobStatus.Running, JobStatus.Paused, JobStatus.Ready, JobStatus.Standby, JobStatus.Waiting, JobStatus.Pending],
        [JobVerb.Pause] = [JobStatus.Created, JobStatus.Running, JobStatus.Paused, JobStatus.Ready, JobStatus.Standby],
        [JobVerb.Resume] = [JobStatus.Created, JobStatus.Running, JobStatus.Paused, JobStatus.Ready, JobStatus.Standby],
        [JobVerb.SetSpeed] = [JobStatus.Created, JobStatus.Running, JobStatus.Paused, JobStatus.Ready, JobStatus.Standby],
        [JobVerb.Complete] = [JobStatus.Ready],
        [JobVerb.Finalize] = [JobStatus.Pending],
        [JobVerb.Dismiss] = [JobStatus.Concluded],
    };

    [Fact]
    public void EveryTransitionCell()
    {
        foreach (var from in Enum.GetValues<JobStatus>())
        {
            foreach (var to in Enum.GetValues<JobStatus>())
            {
                Assert.True(Next[from].Contains(to) == JobStateTable.CanTransition(from, to), $"{from} -> {to}");
            }
        }
    }

    [Fact]
    public void EveryVerbCell()
    {
        foreach (var verb in Enum.GetValues<JobVerb>())
        {
            foreach (var status in Enum.GetValues<JobStatus>())
            {
                Assert.True(Accepting[verb].Contains(status) == JobStateTable.Accepts(status, verb), $"{verb} in {status}");
            }
        }

        Assert.Equal("set-speed", JobStateTable.Name(JobVerb.SetSpeed));
    }
}
