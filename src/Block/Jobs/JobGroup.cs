namespace ExportServer.Block.Jobs;

/// <summary>
/// Jobs that end as one (QEMU's JobTxn): every job has one, of itself alone or of the jobs of a
/// transaction with completion-mode grouped. A job done with its work waits until every job of
/// the group is; then all become pending and, unless one waits for job-finalize, all are committed
/// and then finalised. If one fails or is cancelled, every other is cancelled, and once each has
/// stopped all are finalised as aborted. Jobs are kept newest first, the order QEMU visits them.
/// </summary>
public sealed class JobGroup
{
    private readonly List<Job> _jobs = [];
    private Phase _phase;

    private enum Phase
    {
        Running,
        Pending,
        Finalizing,
        Aborting,
    }

    internal void Add(Job job)
    {
        lock (_jobs)
        {
            _jobs.Insert(0, job);
        }
    }

    /// <summary>Forgets a job that was never started (its transaction failed) or that is finalised.</summary>
    internal void Remove(Job job)
    {
        lock (_jobs)
        {
            _jobs.Remove(job);
        }
    }

    /// <summary>A job finished its work well: once every job has, all enter pending, and are finalised unless one must wait for job-finalize.</summary>
    internal async Task SucceededAsync()
    {
        Job[] jobs;
        lock (_jobs)
        {
            if (_phase != Phase.Running || _jobs.Any(j => !j.WorkDone))
            {
                return;
            }

            _phase = Phase.Pending;
            jobs = _jobs.ToArray();
        }

        foreach (var j in jobs)
        {
            j.EnterPending();
        }

        if (jobs.All(j => j.AutoFinalize))
        {
            await FinalizeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>QEMU's job_do_finalize: every job is committed, then each finalised; a failed commit aborts the group instead.</summary>
    internal async Task FinalizeAsync()
    {
        Job[] jobs;
        lock (_jobs)
        {
            if (_phase != Phase.Pending)
            {
                return;
            }

            _phase = Phase.Finalizing;
            jobs = _jobs.ToArray();
        }

        foreach (var j in jobs)
        {
            if (!await j.PrepareAsync().ConfigureAwait(false))
            {
                lock (_jobs)
                {
                    _phase = Phase.Pending;
                }

                await AbortAsync(j).ConfigureAwait(false);
                return;
            }
        }

        foreach (var j in jobs)
        {
            await j.FinalizeSingleAsync().ConfigureAwait(false);
        }
    }

    /// <summary>QEMU's job_completed_txn_abort: <paramref name="failed"/> failed or was cancelled; the others are cancelled, and once each has stopped all are finalised.</summary>
    internal async Task AbortAsync(Job failed)
    {
        Job[] others;
        lock (_jobs)
        {
            if (_phase is Phase.Aborting or Phase.Finalizing)
            {
                return;
            }

            _phase = Phase.Aborting;
            others = _jobs.Where(j => !ReferenceEquals(j, failed)).ToArray();
        }

        foreach (var j in others)
        {
            j.CancelForGroup();
        }

        while (true)
        {
            Job? next;
            lock (_jobs)
            {
                next = _jobs.FirstOrDefault();
            }

            if (next is null)
            {
                return;
            }

            await next.WorkFinished.ConfigureAwait(false);
            await next.FinalizeSingleAsync().ConfigureAwait(false);
        }
    }
}
