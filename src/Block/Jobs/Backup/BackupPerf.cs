using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs.Backup;

/// <summary>
/// Backup's <c>x-perf</c> tuning (QEMU's BackupPerf): <c>max-workers</c> bounds the copy requests
/// in flight, <c>max-chunk</c> the bytes per request (0: no limit beyond the 1 MiB buffer).
/// Checked with QEMU's wording; <c>use-copy-range</c> is accepted and has no effect here, as copies
/// always go through a buffer. Without x-perf the job's own defaults apply.
/// </summary>
public sealed record BackupPerf(long? MaxWorkers, long? MaxChunk)
{
    /// <summary>The chunk size and requests in flight for a backup into <paramref name="target"/>.</summary>
    public static (long ChunkSize, int MaxInFlight) Resolve(BackupPerf? perf, BlockNode target, bool compress)
    {
        if (perf is null)
        {
            return (BackupJob.ChunkSize, BackupJob.MaxInFlight);
        }

        var workers = perf.MaxWorkers ?? BackupJob.MaxInFlight;
        if (workers < 1 || workers > int.MaxValue)
        {
            throw BlockException.Invalid($"max-workers must be between 1 and {int.MaxValue}");
        }

        var maxChunk = perf.MaxChunk ?? 0;
        if (maxChunk < 0)
        {
            throw BlockException.Invalid("max-chunk must be zero (which means no limit) or positive");
        }

        var granularity = BackupJob.GranularityFor(target, compress);
        if (maxChunk != 0 && maxChunk < granularity)
        {
            throw BlockException.Invalid($"Required max-chunk ({maxChunk}) is less than backup cluster size ({granularity})");
        }

        var chunk = maxChunk == 0 ? BackupJob.ChunkSize : Math.Min(maxChunk / granularity * granularity, BackupJob.ChunkSize);
        // However many workers are asked for, the buffers in flight stay within QEMU's memory bound.
        var inFlight = (int)Math.Min(workers, Math.Max(BackupJob.MaxBufferMemory / chunk, 1));
        return (chunk, inFlight);
    }
}
