namespace ExportServer.Block.Jobs.Stream;

/// <summary>
/// A <see cref="LayerCopyJob"/>'s options: the job type it reports ("stream" or "commit"), the
/// layers of the source's chain to copy (depths [<paramref name="From"/>, <paramref name="Until"/>)
/// as <see cref="ChainScan"/> counts them; <paramref name="Until"/> = 0 copies down to the bottom),
/// whether guest writes to the target must first copy what lies under them (stream, whose target is
/// the active layer), the error policy, the bitmap granularity and copy size, the graph change made
/// when the job succeeds (<paramref name="Finish"/>, at finalisation) and what runs last in every
/// outcome, once the job has let go of its nodes (<paramref name="Clean"/>).
/// </summary>
public sealed record LayerCopySettings(
    string Type,
    int From,
    int Until,
    bool GuardWrites = false,
    ErrorPolicy OnError = ErrorPolicy.Report,
    long Granularity = 64 * 1024,
    long ChunkSize = 512 * 1024,
    int MaxInFlight = 4,
    Func<ValueTask>? Finish = null,
    Func<ValueTask>? Clean = null);
