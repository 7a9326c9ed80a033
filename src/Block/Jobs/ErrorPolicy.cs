namespace ExportServer.Block.Jobs;

/// <summary>QAPI BlockdevOnError: what a job does when a read of its source or a write of its target fails.</summary>
public enum ErrorPolicy
{
    /// <summary>Fail the job.</summary>
    Report,

    /// <summary>Go on as if the request had succeeded (the range is retried later where the job can).</summary>
    Ignore,

    /// <summary>Stop on ENOSPC, report anything else.</summary>
    Enospc,

    /// <summary>Pause the job; resuming retries the request.</summary>
    Stop,
}
