using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs.Backup;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// Backup's <c>x-perf</c> tuning (QEMU's BackupPerf): <c>max-workers</c> bounds the copy requests
/// in flight, <c>max-chunk</c> the bytes per request (0: no limit beyond the 1 MiB buffer).
/// Checked with QEMU's wording; <c>use-copy-range</c> is accepted and has no effect here, as copies
/// always go through a buffer. Without x-perf the job's own defaults apply.
/// </summary>
internal static class BackupPerf
{
    private static readonly QmpArg[] Members =
        [QmpArg.Bool("use-copy-range"), QmpArg.Int("max-workers", true), QmpArg.Int("max-chunk", true)];

    /// <summary>The chunk size and requests in flight for a backup into <paramref name="target"/>.</summary>
    public static (long ChunkSize, int MaxInFlight) Read(QmpCall call, BlockNode target, bool compress)
    {
        if (call.Arguments["x-perf"] is not JsonObject perf)
        {
            return (BackupJob.ChunkSize, BackupJob.MaxInFlight);
        }

        QmpArguments.Check(perf, Members, boxed: false, "x-perf.");
        var workers = perf["max-workers"]?.GetValue<long>() ?? BackupJob.MaxInFlight;
        if (workers < 1 || workers > int.MaxValue)
        {
            throw QmpException.Generic($"max-workers must be between 1 and {int.MaxValue}");
        }

        var maxChunk = perf["max-chunk"]?.GetValue<long>() ?? 0;
        if (maxChunk < 0)
        {
            throw QmpException.Generic("max-chunk must be zero (which means no limit) or positive");
        }

        var granularity = BackupJob.GranularityFor(target, compress);
        if (maxChunk != 0 && maxChunk < granularity)
        {
            throw QmpException.Generic($"Required max-chunk ({maxChunk}) is less than backup cluster size ({granularity})");
        }

        var chunk = maxChunk == 0 ? BackupJob.ChunkSize : Math.Min(maxChunk / granularity * granularity, BackupJob.ChunkSize);
        // However many workers are asked for, the buffers in flight stay within QEMU's memory bound.
        var inFlight = (int)Math.Min(workers, Math.Max(BackupJob.MaxBufferMemory / chunk, 1));
        return (chunk, inFlight);
    }
}
