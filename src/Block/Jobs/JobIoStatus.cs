namespace ExportServer.Block.Jobs;

/// <summary>QAPI BlockDeviceIoStatus of a block job: set when a stop policy paused the job.</summary>
public enum JobIoStatus
{
    Ok,
    Failed,
    Nospace,
}
