using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>The jobs by id, from creation until dismissed.</summary>
internal sealed class JobRegistry(StorageDaemon daemon)
{
    private readonly Dictionary<string, Job> _jobs = new(StringComparer.Ordinal);

    public IReadOnlyList<Job> All
    {
        get
        {
            lock (_jobs)
            {
                return _jobs.Values.ToList();
            }
        }
    }

    /// <summary>
    /// Creates a job and runs <paramref name="work"/> in the background:
    /// created → running → waiting → pending → concluded, with the failure recorded as its error.
    /// </summary>
    public Job Start(string id, string type, Func<Job, ValueTask> work)
    {
        Block.Core.BlockGraph.ValidateNodeName(id);
        var job = new Job(id, type, daemon);
        lock (_jobs)
        {
            if (!_jobs.TryAdd(id, job))
            {
                throw QmpException.Generic($"Job ID '{id}' already in use");
            }
        }

        job.Transition(JobStatus.Created);
        job.Transition(JobStatus.Running);
        _ = Task.Run(async () =>
        {
            try
            {
                await work(job).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                job.Error = e.Message;
            }

            lock (_jobs)
            {
                job.TotalProgress = Math.Max(job.TotalProgress, 1);
                job.CurrentProgress = job.Error is null ? job.TotalProgress : job.CurrentProgress;
                if (job.Error is null)
                {
                    job.Transition(JobStatus.Waiting);
                    job.Transition(JobStatus.Pending);
                }
                else
                {
                    job.Transition(JobStatus.Aborting);
                }

                job.Transition(JobStatus.Concluded);
            }
        });
        return job;
    }

    public Job Find(string id)
    {
        lock (_jobs)
        {
            return _jobs.TryGetValue(id, out var j) ? j : throw QmpException.Generic($"Job not found");
        }
    }

    /// <summary>job-dismiss: a concluded job leaves the list.</summary>
    public void Dismiss(string id)
    {
        lock (_jobs)
        {
            var job = Find(id);
            job.Check(JobVerb.Dismiss);
            job.Transition(JobStatus.Null);
            _jobs.Remove(id);
        }
    }
}
