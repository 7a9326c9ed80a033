using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Bitmaps;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>BLOCK_JOB_PENDING: sent when a job with auto-finalize=false reaches pending, with qemu-storage-daemon's data, and listed in the schema.</summary>
public sealed class PendingEventTests
{
    [Fact]
    public async Task AJobWaitingForFinalizeAnnouncesItAsQemuDoes()
    {
        using var dir = new TempDir();
        var seen = new Dictionary<bool, List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            var image = dir[qsd ? "qsd.qcow2" : "es.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
            await using var d = await BitmapDaemon.StartAsync(dir, qsd, image);
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "null-co", ["node-name"] = "tgt", ["size"] = 16 << 20 });
            var events = seen[qsd] = [];
            foreach (var finalize in new[] { true, false })
            {
                var id = finalize ? "auto" : "manual";
                await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
                {
                    ["job-id"] = id, ["device"] = "fmt", ["target"] = "tgt", ["sync"] = "full", ["auto-finalize"] = finalize,
                });
                if (!finalize)
                {
                    var pending = await d.Qmp.WaitEventAsync("BLOCK_JOB_PENDING");
                    events.Add(pending["data"]!.ToJsonString());
                    await d.Qmp.ExecuteAsync("job-finalize", new JsonObject { ["id"] = id });
                }

                await d.Qmp.WaitEventAsync("BLOCK_JOB_COMPLETED", e => e["data"]!["device"]!.GetValue<string>() == id);
                await d.Qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["id"]!.GetValue<string>() == id && e["data"]!["status"]!.GetValue<string>() == "null");
            }

            events.AddRange(d.Qmp.Events.Where(e => e["event"]!.GetValue<string>() == "BLOCK_JOB_PENDING").Select(e => e.ToJsonString()));
            if (!qsd)
            {
                var schema = (JsonArray)await d.Qmp.ExecuteAsync("query-qmp-schema");
                Assert.Contains(schema, e => e!["meta-type"]!.GetValue<string>() == "event" && e["name"]!.GetValue<string>() == "BLOCK_JOB_PENDING");
            }
        }

        Assert.Equal("""{"type":"backup","id":"manual"}""", Assert.Single(seen[true]));
        Assert.Equal(seen[true], seen[false]);
    }
}
