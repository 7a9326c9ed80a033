using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>The jobs by id, from creation until dismissed; each reports to <paramref name="events"/>.</summary>
public sealed class JobRegistry(IJobEvents events)
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

    /// <summary>Creates a job around <paramref name="body"/> and starts it (created → running).</summary>
    public Job Start(string id, JobBody body, bool autoFinalize = true, bool autoDismiss = true, long speed = 0)
    {
        var job = Reserve(id, body, autoFinalize, autoDismiss, speed);
        job.Start();
        return job;
    }

    /// <summary>A job whose work is one call (blockdev-create: QEMU leaves it concluded until job-dismiss).</summary>
    public Job Start(string id, string type, Func<ValueTask> work) => Start(id, new DelegateJob(type, work), autoDismiss: false);

    /// <summary>Enters a job under its id without starting it (a transaction starts its jobs on commit).</summary>
    public Job Reserve(string id, JobBody body, bool autoFinalize = true, bool autoDismiss = true, long speed = 0)
    {
        BlockGraph.ValidateNodeName(id);
        if (speed < 0)
        {
            throw BlockException.Invalid("Parameter 'speed' expects a non-negative value");
        }

        var job = new Job(id, body, events, Remove, autoFinalize, autoDismiss);
        job.Control.Rate.Speed = speed;
        lock (_jobs)
        {
            if (!_jobs.TryAdd(id, job))
            {
                throw BlockException.Invalid($"Job ID '{id}' already in use");
            }
        }

        return job;
    }

    /// <summary>Forgets a job that was reserved but never started.</summary>
    public void Remove(Job job)
    {
        job.Group.Remove(job);
        lock (_jobs)
        {
            if (_jobs.TryGetValue(job.Id, out var j) && ReferenceEquals(j, job))
            {
                _jobs.Remove(job.Id);
            }
        }
    }

    public bool InUse(string id)
    {
        lock (_jobs)
        {
            return _jobs.ContainsKey(id);
        }
    }

    public Job? TryFind(string id)
    {
        lock (_jobs)
        {
            return _jobs.GetValueOrDefault(id);
        }
    }

    /// <summary>job-* lookup (QEMU: "Job not found").</summary>
    public Job Find(string id) => TryFind(id) ?? throw BlockException.Invalid("Job not found");
}
