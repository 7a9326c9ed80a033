using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>qapi/job.json and blockdev-create: jobs as a small table of states and verbs.</summary>
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

            ctx.Jobs.Start(call.RequireString("job-id"), "create", _ => ImageCreators.CreateAsync(ctx.Daemon, options));
            return Empty();
        }));
        d.Add(new QmpCommand("query-jobs", [], _ =>
        {
            var list = ctx.Jobs.All
                .Select(j => new JobInfo(j.Id, j.Type, JobStateTable.Name(j.Status), j.CurrentProgress, j.TotalProgress, j.Error))
                .ToList();
            return Return(JsonSerializer.SerializeToNode(list, QmpJsonContext.Default.ListJobInfo));
        }, "[JobInfo]"));
        d.Add(new QmpCommand("job-dismiss", [QmpArg.Str("id")], call =>
        {
            ctx.Jobs.Dismiss(call.RequireString("id"));
            return Empty();
        }));
    }
}
