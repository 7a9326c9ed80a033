namespace ExportServer.Block.Jobs;

/// <summary>QAPI JobVerb: what a client may ask of a job.</summary>
public enum JobVerb
{
    Cancel,
    Pause,
    Resume,
    SetSpeed,
    Complete,
    Finalize,
    Dismiss,
}
