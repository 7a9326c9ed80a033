namespace ExportServer.Block.Jobs.Mirror;

/// <summary>
/// A mirror's options: the job type it reports ("mirror", or "commit" for active commit), what to
/// copy (<paramref name="Sync"/>; for Top, <paramref name="BaseDepth"/> is the depth of the first
/// layer of the source's chain not to copy: 2 copies the source's own layer, see <see cref="ChainScan"/>),
/// the bitmap granularity, the buffer that bounds the data in flight, the error policies, the graph
/// change on completion, the clean-up of a failed or cancelled job, and the copy mode
/// (<paramref name="WriteBlocking"/>: copy-mode=write-blocking, see <see cref="MirrorJob"/>).
/// </summary>
public sealed record MirrorSettings(
    SyncMode Sync,
    long Granularity = 64 * 1024,
    long BufferSize = 16 * 1024 * 1024,
    ErrorPolicy OnSourceError = ErrorPolicy.Report,
    ErrorPolicy OnTargetError = ErrorPolicy.Report,
    Func<ValueTask>? Pivot = null,
    Func<ValueTask>? OnAbort = null,
    string Type = "mirror",
    int BaseDepth = 2,
    bool WriteBlocking = false);
