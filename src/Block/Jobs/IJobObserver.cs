namespace ExportServer.Block.Jobs;

/// <summary>What a running job tells its owner (the monitor's job, which turns it into states and events).</summary>
public interface IJobObserver
{
    /// <summary>The job reached a pause point while a pause was requested, and now waits.</summary>
    void Paused();

    /// <summary>The job left a pause point.</summary>
    void Resumed();

    /// <summary>The job is in sync and may be completed (mirror, active commit).</summary>
    void Ready();

    /// <summary>A request failed and <paramref name="action"/> was taken (BLOCK_JOB_ERROR).</summary>
    void Error(bool read, ErrorAction action);
}
