using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Jobs;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Qmp;

/// <summary>
/// Jobs' reports as QMP events, with QEMU's data: JOB_STATUS_CHANGE for every job, BLOCK_JOB_READY /
/// _ERROR / _COMPLETED / _CANCELLED for block jobs only (blockdev-create's job has none).
/// </summary>
internal sealed class QmpJobEvents(StorageDaemon daemon) : IJobEvents
{
    public void StatusChanged(Job job, JobStatus status)
    {
        Emit("JOB_STATUS_CHANGE", JsonSerializer.SerializeToNode(
            new JobStatusChangeEvent(JobStateTable.Name(status), job.Id), QmpJsonContext.Default.JobStatusChangeEvent));

        // As QEMU's job_transition_to_pending: only a job waiting for job-finalize announces it.
        if (status == JobStatus.Pending && job.IsBlockJob && !job.AutoFinalize)
        {
            Emit("BLOCK_JOB_PENDING", new JsonObject { ["type"] = job.Type, ["id"] = job.Id });
        }
    }

    public void Ready(Job job) => EmitBlockJob(job, "BLOCK_JOB_READY", null);

    public void Error(Job job, bool read, ErrorAction action)
    {
        if (job.IsBlockJob)
        {
            Emit("BLOCK_JOB_ERROR", JsonSerializer.SerializeToNode(
                new BlockJobErrorEvent(job.Id, read ? "read" : "write", action.ToString().ToLowerInvariant()), QmpJsonContext.Default.BlockJobErrorEvent));
        }
    }

    public void Ended(Job job, bool cancelled) =>
        EmitBlockJob(job, cancelled ? "BLOCK_JOB_CANCELLED" : "BLOCK_JOB_COMPLETED", cancelled ? null : job.Error);

    private void EmitBlockJob(Job job, string name, string? error)
    {
        if (job.IsBlockJob)
        {
            var c = job.Control;
            Emit(name, JsonSerializer.SerializeToNode(
                new BlockJobEvent(job.Type, job.Id, c.Length, c.Offset, c.Rate.Speed, error), QmpJsonContext.Default.BlockJobEvent));
        }
    }

    private void Emit(string name, JsonNode? data) => daemon.Emit(name, (JsonObject?)data);
}
