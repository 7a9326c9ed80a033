namespace ExportServer.Block.Jobs;

/// <summary>What a failed copy that a guest write waits for (<see cref="CopyEngine.CopyNowAsync"/>) does.</summary>
public enum BeforeWriteErrors
{
    /// <summary>The job's policy takes the error without the write waiting (write-blocking mirror); the write sees the failure.</summary>
    Deferred,

    /// <summary>Only the write fails; the job goes on and copies the range later (copy-before-write's break-guest-write).</summary>
    FailWrite,
}
