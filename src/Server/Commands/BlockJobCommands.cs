using System.Text.Json;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>
/// qapi/block-core.json's block-job-* verbs and query-block-jobs: the job named by 'device' (its
/// job id), and the options every block job command shares (speed, error policies, auto-*).
/// </summary>
internal static class BlockJobCommands
{
    /// <summary>The arguments of every block job command after its own.</summary>
    public static readonly QmpArg[] CommonArgs =
    [
        QmpArg.Int("speed", optional: true),
        QmpArg.Bool("auto-finalize"),
        QmpArg.Bool("auto-dismiss"),
    ];

    public static readonly string[] ErrorPolicies = ["report", "ignore", "enospc", "stop", "auto"];

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("query-block-jobs", [], _ =>
            Return(JsonSerializer.SerializeToNode(ctx.Jobs.All.Where(j => j.IsBlockJob).Select(Info).ToList(), QmpJsonContext.Default.ListBlockJobInfo)), "[BlockJobInfo]"));
        Verb(d, ctx, "block-job-pause", [], (j, _) => j.Pause());
        Verb(d, ctx, "block-job-resume", [], (j, _) => j.Resume());
        Verb(d, ctx, "block-job-complete", [], (j, _) => j.Complete());
        Verb(d, ctx, "block-job-dismiss", [QmpArg.Str("id")], (j, _) => j.Dismiss());
        Verb(d, ctx, "block-job-cancel", [QmpArg.Bool("force")], (j, call) =>
        {
            // As QEMU: only a forced cancel ends a paused job (job-cancel always forces).
            var force = call.GetBool("force", false);
            if (j.UserPaused && !force)
            {
                throw QmpException.Generic($"The block job for device '{j.Id}' is currently paused");
            }

            j.Cancel(force);
        });
        Verb(d, ctx, "block-job-set-speed", [QmpArg.Int("speed")], (j, call) => j.SetSpeed(call.GetInt("speed")!.Value));
        d.Add(new QmpCommand("block-job-finalize", [QmpArg.Str("id")], async call =>
        {
            await FindBlockJob(ctx, call.RequireString("id")).FinalizeAsync().ConfigureAwait(false);
            return null;
        }));
    }

    /// <summary>Starts a block job with the common options of <paramref name="call"/>; the job id defaults to the device name.</summary>
    public static Job Start(CommandContext ctx, QmpCall call, string defaultId, JobBody body) =>
        ctx.Jobs.Start(
            call.GetString("job-id") ?? defaultId,
            body,
            call.GetBool("auto-finalize", true),
            call.GetBool("auto-dismiss", true),
            call.GetInt("speed") ?? 0);

    /// <summary>
    /// Starts <paramref name="body"/> with a filter of driver <paramref name="filterDriver"/> above
    /// <paramref name="source"/> (named by filter-node-name, else automatically) that the source's
    /// exports use while the job runs; the job takes it out when it ends, and a failed start at once.
    /// <paramref name="makeBody"/> gets the filter (a mirror's pivot moves the filter's users).
    /// </summary>
    public static async ValueTask StartFilteredAsync(
        CommandContext ctx, QmpCall call, string defaultId, BlockNode source, string filterDriver, Func<JobFilter, JobBody> makeBody,
        BlockNode? backingParent = null)
    {
        var filter = new JobFilter(
            ctx.Daemon.Graph, source, filterDriver, call.GetString("filter-node-name"), ctx.Daemon.ReplaceExportedNodeAsync, backingParent);
        await filter.InsertAsync().ConfigureAwait(false);
        try
        {
            Start(ctx, call, defaultId, new FilteredJob(makeBody(filter), filter));
        }
        catch
        {
            await filter.RemoveAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>QAPI MirrorSyncMode, as mirror and backup take it.</summary>
    public static SyncMode Sync(QmpCall call) => call.RequireString("sync") switch
    {
        "full" => SyncMode.Full,
        "top" => SyncMode.Top,
        "bitmap" or "incremental" => SyncMode.Bitmap,
        _ => SyncMode.None,
    };

    /// <summary>on-source-error / on-target-error; 'auto' is report for jobs (no guest to follow).</summary>
    public static ErrorPolicy Policy(QmpCall call, string name) => call.GetString(name) switch
    {
        "ignore" => ErrorPolicy.Ignore,
        "enospc" => ErrorPolicy.Enospc,
        "stop" => ErrorPolicy.Stop,
        _ => ErrorPolicy.Report,
    };

    /// <summary>block-job-* lookup: only block jobs, and QEMU's DeviceNotActive class.</summary>
    private static Job FindBlockJob(CommandContext ctx, string id) =>
        ctx.Jobs.TryFind(id) is { IsBlockJob: true } j ? j : throw new QmpException("DeviceNotActive", $"Block job '{id}' not found");

    /// <summary>QAPI BlockJobInfo.</summary>
    private static BlockJobInfo Info(Job j)
    {
        var c = j.Control;
        return new(
            j.Type,
            j.Id,
            c.Length,
            c.Offset,
            c.Busy && j.Status is JobStatus.Running or JobStatus.Ready,
            c.PauseRequested,
            c.Rate.Speed,
            c.IoStatus.ToString().ToLowerInvariant(),
            j.Status is JobStatus.Ready or JobStatus.Standby,
            JobStateTable.Name(j.Status),
            j.AutoFinalize,
            j.AutoDismiss,
            j.Error);
    }

    private static void Verb(QmpDispatcher d, CommandContext ctx, string name, QmpArg[] args, Action<Job, QmpCall> verb)
    {
        // block-job-dismiss and -finalize name the job 'id'; the others 'device'.
        var idArg = args.Length > 0 && args[0].Name == "id" ? [] : new[] { QmpArg.Str("device") };
        d.Add(new QmpCommand(name, [.. idArg, .. args], call =>
        {
            verb(FindBlockJob(ctx, call.GetString("device") ?? call.RequireString("id")), call);
            return Empty();
        }));
    }
}
