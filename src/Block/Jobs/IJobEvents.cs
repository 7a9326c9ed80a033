namespace ExportServer.Block.Jobs;

/// <summary>
/// What the jobs of a <see cref="JobRegistry"/> report to whoever presents them (the QMP monitor
/// turns each call into an event). Calls come in the order things happen, the status changes and
/// the end under the job's lock, so a listener that reads the job sees the state the call reports.
/// </summary>
public interface IJobEvents
{
    /// <summary>The job entered <paramref name="status"/> (QEMU's JOB_STATUS_CHANGE).</summary>
    void StatusChanged(Job job, JobStatus status);

    /// <summary>The job is in sync and may be completed (BLOCK_JOB_READY).</summary>
    void Ready(Job job);

    /// <summary>A request of the job failed and <paramref name="action"/> was taken (BLOCK_JOB_ERROR).</summary>
    void Error(Job job, bool read, ErrorAction action);

    /// <summary>
    /// The job is done, just before it concludes: cancelled (BLOCK_JOB_CANCELLED), or completed
    /// (BLOCK_JOB_COMPLETED; failed when <see cref="Job.Error"/> is set).
    /// </summary>
    void Ended(Job job, bool cancelled);
}
