using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;

namespace ExportServer.Block.Transactions;

/// <summary>
/// A backup of the node <see cref="Device"/> into <see cref="Target"/> (a node name, or for
/// drive-backup the file the action's target factory makes), with the job's settings; the job id
/// defaults to the source's node name.
/// </summary>
public sealed record BackupRequest(string? JobId, string Device, string Target, SyncMode Sync)
{
    public bool Compress { get; init; }

    public ErrorPolicy OnSourceError { get; init; }

    public ErrorPolicy OnTargetError { get; init; }

    public string? FilterNodeName { get; init; }

    public bool AutoFinalize { get; init; } = true;

    public bool AutoDismiss { get; init; } = true;

    public long Speed { get; init; }

    public BackupPerf? Perf { get; init; }

    /// <summary>Whether sync was given as 'incremental' (bitmap with bitmap-mode on-success), for QEMU's messages.</summary>
    public bool Incremental { get; init; }

    /// <summary>The source's dirty bitmap the backup reads (sync bitmap) or updates (bitmap-mode).</summary>
    public string? Bitmap { get; init; }

    public BitmapSyncMode? BitmapMode { get; init; }

    /// <summary>Discard each range on the source once it is copied (QEMU 9.1's discard-source), so a fleecing image shrinks as the backup reads it.</summary>
    public bool DiscardSource { get; init; }
}
