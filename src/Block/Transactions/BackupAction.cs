using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;

namespace ExportServer.Block.Transactions;

/// <summary>
/// drive-backup / blockdev-backup as a transaction action: prepare finds the target (a node, or one
/// <paramref name="createTarget"/> makes from the source and opens) and reserves the job id; commit
/// puts the job's filter above the source and starts the job, whose copy-before-write fixes the
/// point in time, held paused until clean lets it run (the events QEMU's drained section gives);
/// abort ends the created job and closes a target it opened. A bitmap the backup uses is
/// frozen in prepare (a later action of the same transaction finds it busy) and left as it was by abort.
/// </summary>
public sealed class BackupAction(
    ITransactionContext ctx, BackupRequest request, Func<BlockNode, ValueTask<BlockNode>>? createTarget = null) : ITransactionAction
{
    private Job? _job;
    private JobFilter? _filter;
    private BlockNode? _openedTarget;
    private BackupBitmap? _syncBitmap;

    /// <summary>The jobs the transaction's backups end with (completion-mode grouped); null: this job ends on its own.</summary>
    public JobGroup? Group { get; set; }

    public async ValueTask PrepareAsync()
    {
        var source = ctx.Lookup(request.Device, null);
        BlockNode target;
        if (createTarget is not null)
        {
            target = _openedTarget = await createTarget(source).ConfigureAwait(false);
        }
        else
        {
            var name = request.Target;
            target = ctx.Graph.TryFind(name) ?? throw BlockException.Invalid($"Cannot find device='{name}' nor node-name='{name}'");
        }

        var sync = request.Sync;
        var bitmapMode = request.BitmapMode;
        BlockDirtyBitmap? bitmap = null;
        if (sync == SyncMode.Bitmap && request.Bitmap is null)
        {
            throw BlockException.Invalid($"must provide a valid bitmap name for '{SyncName}' sync mode");
        }

        if (request.Incremental)
        {
            if (bitmapMode is { } m && m != BitmapSyncMode.OnSuccess)
            {
                throw BlockException.Invalid("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
            }

            bitmapMode = BitmapSyncMode.OnSuccess;
        }

        if (request.Bitmap is { } bitmapName)
        {
            bitmap = source.FindDirtyBitmap(bitmapName) ?? throw BlockException.Invalid($"Bitmap '{bitmapName}' could not be found");
            if (bitmapMode is null)
            {
                throw BlockException.Invalid("Bitmap sync mode must be given when providing a bitmap");
            }

            bitmap.Check(BitmapChecks.AllowReadOnly);
            if (sync == SyncMode.None)
            {
                throw BlockException.Invalid("sync mode 'none' does not produce meaningful bitmap outputs");
            }

            if (bitmapMode == BitmapSyncMode.Never && sync != SyncMode.Bitmap)
            {
                throw BlockException.Invalid($"Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '{SyncName}'");
            }
        }
        else if (bitmapMode is not null)
        {
            throw BlockException.Invalid("Cannot specify bitmap sync mode without a bitmap");
        }

        if (ReferenceEquals(source, target))
        {
            throw BlockException.Invalid("Cannot backup a node into itself");
        }

        var compress = request.Compress;
        if (compress && target.CompressedWriteSize == 0)
        {
            // QEMU appends the target's device name, which a node without a BlockBackend lacks.
            throw BlockException.Invalid("Compression is not supported for this drive ");
        }

        var (chunkSize, inFlight) = BackupPerf.Resolve(request.Perf, target, compress);
        var options = new CopyOptions(
            chunkSize,
            inFlight,
            OnSourceError: request.OnSourceError,
            OnTargetError: request.OnTargetError,
            DiscardSource: request.DiscardSource);
        if (bitmap is not null)
        {
            if (bitmapMode != BitmapSyncMode.Never)
            {
                bitmap.Check(BitmapChecks.Default);
            }

            bitmap.Freeze();
            _syncBitmap = new BackupBitmap(bitmap, bitmapMode!.Value);
        }

        _filter = new JobFilter(ctx.Graph, source, "copy-before-write", request.FilterNodeName, ctx.ReplaceUsersAsync);
        JobBody job = new FilteredJob(new BackupJob(source, target, sync, options, compress, _syncBitmap), _filter);
        _job = ctx.Jobs.Reserve(
            request.JobId ?? source.NodeName,
            _openedTarget is null ? job : new OwnedTargetJob(job, ctx.Graph, target),
            request.AutoFinalize,
            request.AutoDismiss,
            request.Speed);
        if (Group is { } group)
        {
            _job.JoinGroup(group);
        }

        _job.Create();
    }

    /// <summary>The sync mode as the command named it.</summary>
    private string SyncName => request.Incremental ? "incremental" : request.Sync.ToString().ToLowerInvariant();

    public async ValueTask CommitAsync()
    {
        await _filter!.InsertAsync().ConfigureAwait(false);
        _job!.Start(held: true);
    }

    public async ValueTask AbortAsync()
    {
        _syncBitmap?.Restore();
        _job?.AbortUnstarted();

        if (_openedTarget is not null)
        {
            await ctx.Graph.RemoveAsync(_openedTarget.NodeName).ConfigureAwait(false);
        }
    }

    /// <summary>The job runs once the transaction is over: QEMU's held it paused in a drained section until here.</summary>
    public ValueTask CleanAsync()
    {
        _job?.Release();
        return ValueTask.CompletedTask;
    }
}
