using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;

namespace ExportServer.Block.Transactions;

/// <summary>
/// drive-backup / blockdev-backup as a transaction action: prepare finds the target (a node, or one
/// <paramref name="createTarget"/> makes from the source and opens) and reserves the job id; commit
/// puts the job's filter above the source and starts the job, whose copy-before-write fixes the
/// point in time; abort forgets the job and closes a target it opened.
/// </summary>
public sealed class BackupAction(
    ITransactionContext ctx, BackupRequest request, Func<BlockNode, ValueTask<BlockNode>>? createTarget = null) : ITransactionAction
{
    private Job? _job;
    private JobFilter? _filter;
    private BlockNode? _openedTarget;

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
            OnTargetError: request.OnTargetError);
        _filter = new JobFilter(ctx.Graph, source, "copy-before-write", request.FilterNodeName, ctx.ReplaceUsersAsync);
        _job = ctx.Jobs.Reserve(
            request.JobId ?? source.NodeName,
            new FilteredJob(new BackupJob(source, target, request.Sync, options, compress), _filter),
            request.AutoFinalize,
            request.AutoDismiss,
            request.Speed);
    }

    public async ValueTask CommitAsync()
    {
        await _filter!.InsertAsync().ConfigureAwait(false);
        _job!.Start();
    }

    public async ValueTask AbortAsync()
    {
        if (_job is not null)
        {
            ctx.Jobs.Remove(_job);
        }

        if (_openedTarget is not null)
        {
            await ctx.Graph.RemoveAsync(_openedTarget.NodeName).ConfigureAwait(false);
        }
    }
}
