namespace ExportServer.Block.Jobs;

/// <summary>
/// How a <see cref="CopyEngine"/> copies: <paramref name="ChunkSize"/> bytes per request (a multiple
/// of the bitmap's granularity), up to <paramref name="MaxInFlight"/> requests at once, the error
/// policies for source reads and target writes, whether an ignored failure leaves its range dirty
/// to be copied again (mirror) or skips it (backup), and whether ranges that read as zeroes are
/// written as zeroes instead of data. With <paramref name="DiscardSource"/> each range copied is
/// discarded on the source (its failure ignored, as QEMU's block-copy does).
/// </summary>
public sealed record CopyOptions(
    long ChunkSize = 1024 * 1024,
    int MaxInFlight = 8,
    ErrorPolicy OnSourceError = ErrorPolicy.Report,
    ErrorPolicy OnTargetError = ErrorPolicy.Report,
    bool RetryIgnored = false,
    bool DetectZeroes = true,
    bool DiscardSource = false);
