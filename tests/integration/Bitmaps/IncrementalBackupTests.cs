using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// Push-mode incremental backup as QEMU's dirty-bitmap guide runs it (full backup with a new bitmap,
/// first and second incremental, a failed incremental and its retry, a new anchor point), writes
/// made with qemu-io through the export. Every incremental, on top of the images before it, equals
/// the source; the bitmap's state after each step and every refused command are the same as in
/// qemu-storage-daemon.
/// </summary>
public sealed class IncrementalBackupTests
{
    private const string Size = "16M";

    private static JsonObject Args(string json) => (JsonObject)JsonNode.Parse(json)!;

    /// <summary>Backups that QEMU refuses before it starts anything, with the bitmap 'b0' present and a target node 'tgt'.</summary>
    private static readonly string[] Refused =
    [
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"bitmap"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"b0","bitmap-mode":"never"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"b0","bitmap-mode":"always"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"nope"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"full","bitmap":"b0"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"none","bitmap":"b0","bitmap-mode":"on-success"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"full","bitmap":"b0","bitmap-mode":"never"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"top","bitmap":"b0","bitmap-mode":"never"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"full","bitmap-mode":"on-success"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"b0","bitmap-mode":"sometimes"}""",
        """{"job-id":"e","device":"fmt","target":"tgt","sync":"sideways"}""",
    ];

    [Fact]
    public async Task TheGuidesScenariosGiveChainsEqualToTheSourceAsInQemu()
    {
        using var dir = new TempDir();
        var results = new Dictionary<bool, List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            results[qsd] = await ScenarioAsync(dir, qsd);
        }

        Assert.Equal(results[true].Count, results[false].Count);
        for (var i = 0; i < results[true].Count; i++)
        {
            Assert.Equal(results[true][i], results[false][i]);
        }

        // The steps record what they prove: the bitmap is frozen (busy, its count standing) while a
        // backup reads it, empty after a successful incremental, kept after a failed one.
        Assert.Contains(results[false], r => r.Contains("\"busy\":true", StringComparison.Ordinal));
        Assert.Contains(results[false], r => r.Contains("is currently in use by another operation", StringComparison.Ordinal));
    }

    private static async Task<List<string>> ScenarioAsync(TempDir dir, bool qsd)
    {
        var tag = qsd ? "qsd" : "es";
        string F(string name) => dir[$"{tag}-{name}.qcow2"];
        var image = F("src");
        var replies = new List<string>();
        await QemuImgAsync("create", "-q", "-f", "qcow2", image, Size);
        await QemuImgAsync("create", "-q", "-f", "qcow2", F("tgt"), Size);
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", "-c", "write -P 0x12 10M 1M", image)).Check("qemu-io");
        await using var d = await BitmapDaemon.StartAsync(dir, qsd, image);
        async Task Step(string command, string args) =>
            replies.Add(($"{command} {args}: " + await d.ReplyAsync(command, Args(args))).Replace(dir[$"{tag}-"], dir["X-"], StringComparison.Ordinal));
        // QEMU also lists the anonymous bitmaps its backup job keeps internally; only named ones are compared.
        async Task Query(string what) => replies.Add($"{what}: " + new JsonArray([.. ((JsonArray?)await d.BitmapsAsync() ?? []).Where(b => b!["name"] is not null).Select(b => b!.DeepClone())]).ToJsonString());
        async Task<string> Ended(string job, string eventName = "BLOCK_JOB_COMPLETED")
        {
            JsonObject e;
            try
            {
                e = await d.Qmp.WaitEventAsync(eventName, e => e["data"]!["device"]!.GetValue<string>() == job).WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                throw new TimeoutException($"{tag}: no {eventName} for {job} after:\n{string.Join('\n', replies)}");
            }

            return $"{eventName} {job} error={(string?)e["data"]!["error"]}";
        }

        async Task Incremental(string job, string target, string backing, string extra = "")
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", F(backing), "-F", "qcow2", F(target));
            await Step("drive-backup", $$$"""{"job-id":"{{{job}}}","device":"fmt","target":"{{{F(target)}}}","format":"qcow2","mode":"existing","sync":"incremental","bitmap":"b0"{{{extra}}}}""");
        }

        // The chain ending at the target equals what the export serves now (no write since the backup).
        async Task SameAsSource(string target)
        {
            var r = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", F(target), d.Uri());
            replies.Add($"compare {target}: {r.ExitCode} {r.Stdout.Trim()}");
        }

        await Step("blockdev-add", $$$"""{"driver":"qcow2","node-name":"tgt","file":{"driver":"file","filename":"{{{F("tgt")}}}"}}""");
        await Step("block-dirty-bitmap-add", """{"node":"fmt","name":"b0"}""");
        foreach (var refused in Refused)
        {
            await Step("blockdev-backup", refused);
        }

        await Step("block-dirty-bitmap-remove", """{"node":"fmt","name":"b0"}""");

        // Full backup and a new bitmap in one transaction: the anchor.
        await Step("transaction", $$$"""
            {"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"fmt","name":"b0"}},
            {"type":"drive-backup","data":{"job-id":"full","device":"fmt","target":"{{{F("full")}}}","format":"qcow2","sync":"full"}}]}
            """);
        replies.Add(await Ended("full"));
        await SameAsSource("full");
        await d.WriteAsync("write -P 0x21 0 64k", "write -P 0x22 5M 200k", "write -z 12M 64k", "discard 10M 64k");
        await Query("after the first writes");

        // First and second incremental.
        await Incremental("inc0", "inc0", "full");
        replies.Add(await Ended("inc0"));
        await Query("after the first incremental");
        await SameAsSource("inc0");
        await d.WriteAsync("write -P 0x31 1M 64k", "write -P 0x32 15M 4k");
        await Incremental("inc1", "inc1", "inc0");
        replies.Add(await Ended("inc1"));
        await Query("after the second incremental");
        await SameAsSource("inc1");

        // A failed incremental (cancelled): the bitmap keeps its bits and gains the writes made meanwhile.
        await d.WriteAsync("write -P 0x41 2M 1M");
        await Incremental("inc2", "inc2", "inc1", ""","speed":65536,"x-perf":{"max-chunk":65536}""");
        await Query("while a backup reads the bitmap");
        await Step("block-dirty-bitmap-clear", """{"node":"fmt","name":"b0"}""");
        await Step("block-dirty-bitmap-remove", """{"node":"fmt","name":"b0"}""");
        await Step("block-dirty-bitmap-disable", """{"node":"fmt","name":"b0"}""");
        await Step("blockdev-backup", """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"b0"}""");
        await d.WriteAsync("write -P 0x42 8M 64k");
        await Query("after a write during the backup");
        await Step("block-job-cancel", """{"device":"inc2"}""");
        replies.Add(await Ended("inc2", "BLOCK_JOB_CANCELLED"));
        await Query("after the failed incremental");

        // Its retry into a fresh image.
        await Incremental("inc2b", "inc2", "inc1");
        replies.Add(await Ended("inc2b"));
        await Query("after the retry");
        await SameAsSource("inc2");

        // bitmap-mode always: a failed backup leaves the bitmap with what it did not copy, so a
        // retry into the same, partly written image completes it.
        await d.WriteAsync("write -P 0x51 4M 2M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", F("inc2"), "-F", "qcow2", F("inc3"));
        await Step("drive-backup", $$$"""{"job-id":"inc3","device":"fmt","target":"{{{F("inc3")}}}","format":"qcow2","mode":"existing","sync":"bitmap","bitmap":"b0","bitmap-mode":"always","speed":262144,"x-perf":{"max-chunk":65536}}""");
        await Task.Delay(1500);
        await Step("block-job-cancel", """{"device":"inc3"}""");
        replies.Add(await Ended("inc3", "BLOCK_JOB_CANCELLED"));
        await Step("drive-backup", $$$"""{"job-id":"inc3b","device":"fmt","target":"{{{F("inc3")}}}","format":"qcow2","mode":"existing","sync":"incremental","bitmap":"b0"}""");
        replies.Add(await Ended("inc3b"));
        await Query("after the retry into the same image");
        await SameAsSource("inc3");

        // bitmap-mode never reads the bitmap and leaves it as it was.
        await d.WriteAsync("write -P 0x61 3M 128k");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", F("inc3"), "-F", "qcow2", F("inc4"));
        await Step("drive-backup", $$$"""{"job-id":"inc4","device":"fmt","target":"{{{F("inc4")}}}","format":"qcow2","mode":"existing","sync":"bitmap","bitmap":"b0","bitmap-mode":"never"}""");
        replies.Add(await Ended("inc4"));
        await Query("after a backup with bitmap-mode never");
        await SameAsSource("inc4");

        // A new anchor point: clear the bitmap and take a full backup at the same instant.
        await Step("transaction", $$$"""
            {"actions":[{"type":"block-dirty-bitmap-clear","data":{"node":"fmt","name":"b0"}},
            {"type":"drive-backup","data":{"job-id":"full2","device":"fmt","target":"{{{F("full2")}}}","format":"qcow2","sync":"full"}}]}
            """);
        replies.Add(await Ended("full2"));
        await d.WriteAsync("write -P 0x71 6M 64k");
        await Incremental("inc5", "inc5", "full2");
        replies.Add(await Ended("inc5"));
        await Query("after an incremental on the new anchor");
        await SameAsSource("inc5");

        // A full backup that also resets the bitmap (sync full, bitmap-mode on-success).
        await d.WriteAsync("write -P 0x81 7M 64k");
        await Step("drive-backup", $$$"""{"job-id":"full3","device":"fmt","target":"{{{F("full3")}}}","format":"qcow2","sync":"full","bitmap":"b0","bitmap-mode":"on-success"}""");
        replies.Add(await Ended("full3"));
        await Query("after a full backup with the bitmap");
        await SameAsSource("full3");

        foreach (var name in new[] { "full", "inc0", "inc1", "inc2", "inc3", "inc4", "full2", "inc5", "full3" })
        {
            var check = await Tool.RunAsync("qemu-img", "check", "-U", F(name));
            replies.Add($"check {name}: {check.ExitCode}");
        }

        return replies;
    }
}
