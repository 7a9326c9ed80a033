using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Jobs;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>qapi/job.json (query-jobs, job-pause/resume/cancel/complete/finalize/dismiss) and blockdev-create.</summary>
internal static class JobCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("blockdev-create", [QmpArg.Str("job-id"), QmpArg.Obj("options")], call =>
        {
            var options = (JsonObject)call.Arguments["options"]!;
            if (options["driver"] is null)
            {
                throw QmpException.Generic("Parameter 'options.driver' is missing");
            }

            ImageCreation.FindCreator(ctx.Daemon.Graph, options);
            ctx.Jobs.Start(call.RequireString("job-id"), "create", () => ImageCreation.CreateAsync(ctx.Daemon.Graph, options));
            return Empty();
        }));
        d.Add(new QmpCommand(
            "x-blockdev-amend", [QmpArg.Str("job-id"), QmpArg.Str("node-name"), QmpArg.Obj("options"), QmpArg.Bool("force")], call =>
        {
            var node = GraphCommands.Lookup(ctx.Daemon, null, call.RequireString("node-name"));
            var options = ((JsonObject)call.Arguments["options"]!).DeepClone().AsObject();
            var driver = options["driver"]?.GetValue<string>() ?? throw QmpException.Generic("Parameter 'options.driver' is missing");
            if (!ctx.Daemon.Graph.HasDriver(driver))
            {
                throw QmpException.Generic($"Block driver '{driver}' not found or not supported");
            }

            if (node.DriverName != driver)
            {
                throw QmpException.Generic("x-blockdev-amend doesn't support changing the block driver");
            }

            if (node is not IAmendableNode amendable)
            {
                throw QmpException.Generic("Driver does not support x-blockdev-amend");
            }

            options.Remove("driver");
            var force = call.GetBool("force", false);
            ctx.Jobs.Start(call.RequireString("job-id"), "amend", () => amendable.AmendAsync(new OptionReader(options, "options."), ctx.Daemon.Graph.Objects, force));
            return Empty();
        }));
        d.Add(new QmpCommand("query-jobs", [], _ =>
            Return(JsonSerializer.SerializeToNode(ctx.Jobs.All.Select(Info).ToList(), QmpJsonContext.Default.ListJobInfo)), "[JobInfo]"));
        Verb(d, ctx, "job-pause", j => j.Pause());
        Verb(d, ctx, "job-resume", j => j.Resume());
        Verb(d, ctx, "job-cancel", j => j.Cancel(force: true));
        Verb(d, ctx, "job-complete", j => j.Complete());
        Verb(d, ctx, "job-dismiss", j => j.Dismiss());
        d.Add(new QmpCommand("job-finalize", [QmpArg.Str("id")], async call =>
        {
            await ctx.Jobs.Find(call.RequireString("id")).FinalizeAsync().ConfigureAwait(false);
            return null;
        }));
    }

    /// <summary>QAPI JobInfo.</summary>
    private static JobInfo Info(Job j) =>
        new(j.Id, j.Type, JobStateTable.Name(j.Status), j.CurrentProgress, j.TotalProgress, j.Error);

    private static void Verb(QmpDispatcher d, CommandContext ctx, string name, Action<Job> verb) =>
        d.Add(new QmpCommand(name, [QmpArg.Str("id")], call =>
        {
            verb(ctx.Jobs.Find(call.RequireString("id")));
            return Empty();
        }));
}
