namespace ExportServer.Block.Jobs;

/// <summary>QAPI JobStatus, in QEMU's order (the state table's index).</summary>
public enum JobStatus
{
    Undefined,
    Created,
    Running,
    Paused,
    Ready,
    Standby,
    Waiting,
    Pending,
    Aborting,
    Concluded,
    Null,
}
