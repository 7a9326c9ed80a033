using ExportServer.Block.Jobs;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// Records what the jobs of a registry report, in order, as short strings ("running",
/// "ended:cancelled"), each after its job's id ("a running") when <paramref name="ids"/>.
/// </summary>
internal sealed class RecordingJobEvents(bool ids = false) : IJobEvents
{
    private readonly List<string> _log = new();
    private readonly Dictionary<JobStatus, TaskCompletionSource> _reached = new();

    public IReadOnlyList<string> Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToList();
            }
        }
    }

    /// <summary>Completes once some job has entered <paramref name="status"/>.</summary>
    public Task Reached(JobStatus status)
    {
        lock (_log)
        {
            return Signal(status).Task;
        }
    }

    public void StatusChanged(Job job, JobStatus status)
    {
        lock (_log)
        {
            _log.Add(Named(job, JobStateTable.Name(status)));
            Signal(status).TrySetResult();
        }
    }

    public void Ready(Job job) => Add(Named(job, "ready"));

    public void Error(Job job, bool read, ErrorAction action) => Add(Named(job, $"error:{(read ? "read" : "write")}:{action}"));

    public void Ended(Job job, bool cancelled) =>
        Add(Named(job, cancelled ? "ended:cancelled" : $"ended:completed{(job.Error is null ? string.Empty : ":" + job.Error)}"));

    private string Named(Job job, string entry) => ids ? $"{job.Id} {entry}" : entry;

    private void Add(string entry)
    {
        lock (_log)
        {
            _log.Add(entry);
        }
    }

    private TaskCompletionSource Signal(JobStatus status)
    {
        if (!_reached.TryGetValue(status, out var s))
        {
            _reached[status] = s = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        return s;
    }
}
