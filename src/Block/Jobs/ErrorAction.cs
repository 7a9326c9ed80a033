namespace ExportServer.Block.Jobs;

/// <summary>QAPI BlockErrorAction: what was done about one failed request (BLOCK_JOB_ERROR's action).</summary>
public enum ErrorAction
{
    Ignore,
    Report,
    Stop,
}
