using System.Text.Json.Nodes;
using ExportServer.Server.Daemon;

namespace ExportServer.Server.Commands;

/// <summary>A job as query-jobs shows it; every status change goes through the table and emits JOB_STATUS_CHANGE.</summary>
internal sealed class Job(string id, string type, StorageDaemon daemon)
{
    public string Id { get; } = id;

    public string Type { get; } = type;

    public JobStatus Status { get; private set; } = JobStatus.Undefined;

    public long CurrentProgress { get; set; }

    public long TotalProgress { get; set; }

    public string? Error { get; set; }

    public void Transition(JobStatus to)
    {
        if (!JobStateTable.CanTransition(Status, to))
        {
            throw new InvalidOperationException($"job '{Id}': no transition {Status} -> {to}");
        }

        Status = to;
        daemon.Emit("JOB_STATUS_CHANGE", new JsonObject { ["status"] = JobStateTable.Name(to), ["id"] = Id });
    }

    public void Check(JobVerb verb)
    {
        if (!JobStateTable.Accepts(Status, verb))
        {
            throw Qmp.QmpException.Generic($"Job '{Id}' in state '{JobStateTable.Name(Status)}' cannot accept command verb '{JobStateTable.Name(verb)}'");
        }
    }
}
