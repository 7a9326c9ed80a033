namespace ExportServer.Block.Jobs;

/// <summary>
/// Jobs that end as one (QEMU's JobTxn, a transaction with completion-mode grouped): a job that
/// finishes its work waits until every job of the group has; if one fails or is cancelled, every
/// other is cancelled, and those already waiting abort instead of finalising.
/// </summary>
public sealed class JobGroup
{
    private readonly List<Job> _jobs = [];
    private readonly TaskCompletionSource<bool> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _running;

    internal void Add(Job job)
    {
        lock (_jobs)
        {
            _jobs.Add(job);
            _running++;
        }
    }

    /// <summary>Forgets a job that was never started (its transaction failed).</summary>
    internal void Remove(Job job)
    {
        lock (_jobs)
        {
            if (_jobs.Remove(job))
            {
                _running--;
            }
        }
    }

    /// <summary>A job finished its work; true once all have, false when one failed.</summary>
    internal Task<bool> SucceededAsync()
    {
        lock (_jobs)
        {
            if (--_running == 0)
            {
                _outcome.TrySetResult(true);
            }
        }

        return _outcome.Task;
    }

    /// <summary>A job failed or was cancelled: the others are cancelled.</summary>
    internal void Fail(Job failed)
    {
        if (!_outcome.TrySetResult(false))
        {
            return;
        }

        Job[] others;
        lock (_jobs)
        {
            others = _jobs.Where(j => !ReferenceEquals(j, failed)).ToArray();
        }

        foreach (var j in others)
        {
            j.CancelForGroup();
        }
    }
}
