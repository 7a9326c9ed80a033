namespace ExportServer.Server.Commands;

/// <summary>QAPI JobStatus, in QEMU's order (the state table's index).</summary>
internal enum JobStatus
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
