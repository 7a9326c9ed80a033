namespace ExportServer.Server.Commands;

/// <summary>QAPI JobVerb: what a client may ask of a job.</summary>
internal enum JobVerb
{
    Cancel,
    Pause,
    Resume,
    SetSpeed,
    Complete,
    Finalize,
    Dismiss,
}
