using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// drive-backup / blockdev-backup as a transaction action: prepare finds (or creates and opens)
/// the target and reserves the job id; commit puts the job's filter above the source and starts the
/// job, whose copy-before-write fixes the point in time; abort forgets the job and closes a target it opened.
/// </summary>
internal sealed class JobBackupAction(CommandContext ctx, JsonObject args, bool drive) : ITransactionAction
{
    private Job? _job;
    private JobFilter? _filter;
    private BlockNode? _openedTarget;

    public async ValueTask PrepareAsync()
    {
        var call = new QmpCall(args, null);
        var source = GraphCommands.Lookup(ctx.Daemon, call.RequireString("device"), null);
        var sync = BackupJobCommands.Sync(call);
        BlockNode target;
        if (drive)
        {
            var existing = call.GetString("mode") == "existing";
            target = _openedTarget = await JobTargets.OpenAsync(
                ctx, call.RequireString("target"), call.GetString("format") ?? (existing ? "raw" : source.DriverName), null,
                existing, source.Length, sync == SyncMode.Top ? source.BackingChild?.Node : null).ConfigureAwait(false);
        }
        else
        {
            var name = call.RequireString("target");
            target = ctx.Daemon.Graph.TryFind(name) ?? throw QmpException.Generic($"Cannot find device='{name}' nor node-name='{name}'");
        }

        if (ReferenceEquals(source, target))
        {
            throw QmpException.Generic("Cannot backup a node into itself");
        }

        var compress = call.GetBool("compress", false);
        if (compress && target.CompressedWriteSize == 0)
        {
            // QEMU appends the target's device name, which a node without a BlockBackend lacks.
            throw QmpException.Generic("Compression is not supported for this drive ");
        }

        var (chunkSize, inFlight) = BackupPerf.Read(call, target, compress);
        var options = new CopyOptions(
            chunkSize,
            inFlight,
            OnSourceError: BlockJobCommands.Policy(call, "on-source-error"),
            OnTargetError: BlockJobCommands.Policy(call, "on-target-error"));
        _filter = new JobFilter(ctx.Daemon.Graph, source, "copy-before-write", call.GetString("filter-node-name"), ctx.Daemon.ReplaceExportedNodeAsync);
        _job = ctx.Jobs.Reserve(
            call.GetString("job-id") ?? source.NodeName,
            new FilteredJob(new BackupJob(source, target, sync, options, compress), _filter),
            call.GetBool("auto-finalize", true),
            call.GetBool("auto-dismiss", true),
            call.GetInt("speed") ?? 0);
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
            await ctx.Daemon.Graph.RemoveAsync(_openedTarget.NodeName).ConfigureAwait(false);
        }
    }
}
