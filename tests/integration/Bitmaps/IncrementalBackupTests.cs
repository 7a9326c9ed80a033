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

        AssertSame(results[true], results[false]);

        // The steps record what they prove: the bitmap is frozen (busy, its count standing) while a
        // backup reads it, empty after a successful incremental, kept after a failed one.
        Assert.Contains(results[false], r => r.Contains("\"busy\":true", StringComparison.Ordinal));
        Assert.Contains(results[false], r => r.Contains("is currently in use by another operation", StringComparison.Ordinal));
    }

    private static async Task<List<string>> ScenarioAsync(TempDir dir, bool qsd)
    {
        await using var s = await Session.StartAsync(dir, qsd);
        await s.Step("blockdev-add", $$$"""{"driver":"qcow2","node-name":"tgt","file":{"driver":"file","filename":"{{{s.F("tgt")}}}"}}""");
        await s.Step("block-dirty-bitmap-add", """{"node":"fmt","name":"b0"}""");
        foreach (var refused in Refused)
        {
            await s.Step("blockdev-backup", refused);
        }

        await s.Step("block-dirty-bitmap-remove", """{"node":"fmt","name":"b0"}""");

        // Full backup and a new bitmap in one transaction: the anchor.
        await s.Step("transaction", $$$"""
            {"actions":[{"type":"block-dirty-bitmap-add","data":{"node":"fmt","name":"b0"}},
            {"type":"drive-backup","data":{"job-id":"full","device":"fmt","target":"{{{s.F("full")}}}","format":"qcow2","sync":"full"}}]}
            """);
        s.Replies.Add(await s.Ended("full"));
        await s.SameAsSource("full");
        await s.D.WriteAsync("write -P 0x21 0 64k", "write -P 0x22 5M 200k", "write -z 12M 64k", "discard 10M 64k");
        await s.Query("after the first writes");

        // First and second incremental.
        await s.Incremental("inc0", "inc0", "full");
        s.Replies.Add(await s.Ended("inc0"));
        await s.Query("after the first incremental");
        await s.SameAsSource("inc0");
        await s.D.WriteAsync("write -P 0x31 1M 64k", "write -P 0x32 15M 4k");
        await s.Incremental("inc1", "inc1", "inc0");
        s.Replies.Add(await s.Ended("inc1"));
        await s.Query("after the second incremental");
        await s.SameAsSource("inc1");

        // A failed incremental (cancelled): the bitmap keeps its bits and gains the writes made meanwhile.
        await s.D.WriteAsync("write -P 0x41 2M 1M");
        await s.Incremental("inc2", "inc2", "inc1", ""","speed":65536,"x-perf":{"max-chunk":65536}""");
        await s.Query("while a backup reads the bitmap");
        await s.Step("block-dirty-bitmap-clear", """{"node":"fmt","name":"b0"}""");
        await s.Step("block-dirty-bitmap-remove", """{"node":"fmt","name":"b0"}""");
        await s.Step("block-dirty-bitmap-disable", """{"node":"fmt","name":"b0"}""");
        await s.Step("blockdev-backup", """{"job-id":"e","device":"fmt","target":"tgt","sync":"incremental","bitmap":"b0"}""");
        await s.D.WriteAsync("write -P 0x42 8M 64k");
        await s.Query("after a write during the backup");
        await s.Step("block-job-cancel", """{"device":"inc2"}""");
        s.Replies.Add(await s.Ended("inc2", "BLOCK_JOB_CANCELLED"));
        await s.Query("after the failed incremental");

        // Its retry into a fresh image.
        await s.Incremental("inc2b", "inc2", "inc1");
        s.Replies.Add(await s.Ended("inc2b"));
        await s.Query("after the retry");
        await s.SameAsSource("inc2");

        // bitmap-mode always: a failed backup leaves the bitmap with what it did not copy, so a
        // retry into the same, partly written image completes it.
        await s.D.WriteAsync("write -P 0x51 4M 2M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", s.F("inc2"), "-F", "qcow2", s.F("inc3"));
        await s.Step("drive-backup", $$$"""{"job-id":"inc3","device":"fmt","target":"{{{s.F("inc3")}}}","format":"qcow2","mode":"existing","sync":"bitmap","bitmap":"b0","bitmap-mode":"always","speed":262144,"x-perf":{"max-chunk":65536}}""");
        await Task.Delay(1500);
        await s.Step("block-job-cancel", """{"device":"inc3"}""");
        s.Replies.Add(await s.Ended("inc3", "BLOCK_JOB_CANCELLED"));
        await s.Step("drive-backup", $$$"""{"job-id":"inc3b","device":"fmt","target":"{{{s.F("inc3")}}}","format":"qcow2","mode":"existing","sync":"incremental","bitmap":"b0"}""");
        s.Replies.Add(await s.Ended("inc3b"));
        await s.Query("after the retry into the same image");
        await s.SameAsSource("inc3");

        // bitmap-mode never reads the bitmap and leaves it as it was.
        await s.D.WriteAsync("write -P 0x61 3M 128k");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", s.F("inc3"), "-F", "qcow2", s.F("inc4"));
        await s.Step("drive-backup", $$$"""{"job-id":"inc4","device":"fmt","target":"{{{s.F("inc4")}}}","format":"qcow2","mode":"existing","sync":"bitmap","bitmap":"b0","bitmap-mode":"never"}""");
        s.Replies.Add(await s.Ended("inc4"));
        await s.Query("after a backup with bitmap-mode never");
        await s.SameAsSource("inc4");

        // A new anchor point: clear the bitmap and take a full backup at the same instant.
        await s.Step("transaction", $$$"""
            {"actions":[{"type":"block-dirty-bitmap-clear","data":{"node":"fmt","name":"b0"}},
            {"type":"drive-backup","data":{"job-id":"full2","device":"fmt","target":"{{{s.F("full2")}}}","format":"qcow2","sync":"full"}}]}
            """);
        s.Replies.Add(await s.Ended("full2"));
        await s.D.WriteAsync("write -P 0x71 6M 64k");
        await s.Incremental("inc5", "inc5", "full2");
        s.Replies.Add(await s.Ended("inc5"));
        await s.Query("after an incremental on the new anchor");
        await s.SameAsSource("inc5");

        // A full backup that also resets the bitmap (sync full, bitmap-mode on-success).
        await s.D.WriteAsync("write -P 0x81 7M 64k");
        await s.Step("drive-backup", $$$"""{"job-id":"full3","device":"fmt","target":"{{{s.F("full3")}}}","format":"qcow2","sync":"full","bitmap":"b0","bitmap-mode":"on-success"}""");
        s.Replies.Add(await s.Ended("full3"));
        await s.Query("after a full backup with the bitmap");
        await s.SameAsSource("full3");

        foreach (var name in new[] { "full", "inc0", "inc1", "inc2", "inc3", "inc4", "full2", "inc5", "full3" })
        {
            var check = await Tool.RunAsync("qemu-img", "check", "-U", s.F(name));
            s.Replies.Add($"check {name}: {check.ExitCode}");
        }

        return s.Replies;
    }

    /// <summary>
    /// Two incremental backups in a transaction with completion-mode grouped: when one is cancelled,
    /// the other, already done and waiting, is cancelled too and both bitmaps keep their bits; when
    /// both succeed, both bitmaps are emptied and both chains equal their sources. Actions that QEMU
    /// refuses in that mode are refused with its words.
    /// </summary>
    [Fact]
    public async Task GroupedCompletionCancelsAllAndLeavesTheBitmapsAsInQemu()
    {
        using var dir = new TempDir();
        var results = new Dictionary<bool, List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            await using var s = await Session.StartAsync(dir, qsd, "src2", "full", "full2");
            await s.Step("blockdev-add", $$$"""{"driver":"qcow2","node-name":"fmt2","file":{"driver":"file","filename":"{{{s.F("src2")}}}"}}""");
            await s.Step("block-export-add", """{"type":"nbd","id":"e2","node-name":"fmt2","name":"disk2","writable":true}""");
            (await Tool.RunAsync("qemu-img", "convert", "-U", "-O", "qcow2", s.F("src"), s.F("full"))).Check("convert");
            await s.Step("block-dirty-bitmap-add", """{"node":"fmt","name":"b0"}""");
            await s.Step("block-dirty-bitmap-add", """{"node":"fmt2","name":"b1"}""");
            await s.D.WriteAsync("write -P 0x21 0 64k", "write -P 0x22 5M 1M");
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x23 1M 2M", s.D.Uri("disk2"))).Check("qemu-io disk2");

            await s.Step("transaction", """{"actions":[{"type":"block-dirty-bitmap-clear","data":{"node":"fmt","name":"b0"}}],"properties":{"completion-mode":"grouped"}}""");
            await s.Step("transaction", """{"actions":[{"type":"abort","data":{}}],"properties":{"completion-mode":"grouped"}}""");

            // The first job is quick and waits for the second, slow one, which is cancelled.
            foreach (var (name, backing) in new[] { ("a", "full"), ("b", "full2") })
            {
                await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", s.F(backing), "-F", "qcow2", s.F(name));
            }

            var slow = ""","speed":65536,"x-perf":{"max-chunk":65536}""";
            await s.Step("transaction", $$$"""
                {"actions":[{"type":"drive-backup","data":{{{s.IncrementalArgs("a", "a")}}}},
                {"type":"drive-backup","data":{{{s.IncrementalArgs("b", "b", slow, "fmt2", "b1")}}}}],
                "properties":{"completion-mode":"grouped"}}
                """);
            await s.Query("while grouped backups run");
            await s.D.Qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => (string?)e["data"]!["id"] == "a" && (string?)e["data"]!["status"] == "waiting");
            await s.Step("block-job-cancel", """{"device":"b"}""");
            s.Replies.Add(await s.Ended("b", "BLOCK_JOB_CANCELLED"));
            s.Replies.Add(await s.Ended("a", "BLOCK_JOB_CANCELLED"));
            await s.Query("after the group was cancelled");
            await s.Query("after the group was cancelled", "fmt2");

            // Both succeed: both bitmaps are emptied, both chains equal their sources.
            foreach (var (name, backing) in new[] { ("a", "full"), ("b", "full2") })
            {
                await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", s.F(backing), "-F", "qcow2", s.F(name));
            }

            await s.Step("transaction", $$$"""
                {"actions":[{"type":"drive-backup","data":{{{s.IncrementalArgs("a2", "a")}}}},
                {"type":"drive-backup","data":{{{s.IncrementalArgs("b2", "b", "", "fmt2", "b1")}}}}],
                "properties":{"completion-mode":"grouped"}}
                """);
            s.Replies.Add(await s.Ended("a2"));
            s.Replies.Add(await s.Ended("b2"));
            await s.Query("after the group succeeded");
            await s.Query("after the group succeeded", "fmt2");
            await s.SameAsSource("a");
            await s.SameAsSource("b", "disk2");
            results[qsd] = s.Replies;
        }

        AssertSame(results[true], results[false]);
        Assert.Contains(results[false], r => r.Contains("after the group was cancelled: [{\"name\":\"b0\"", StringComparison.Ordinal) && r.Contains("\"count\":1114112", StringComparison.Ordinal));
    }

    private static void AssertSame(List<string> theirs, List<string> ours)
    {
        for (var i = 0; i < Math.Min(theirs.Count, ours.Count); i++)
        {
            Assert.Equal(theirs[i], ours[i]);
        }

        Assert.Equal(theirs.Count, ours.Count);
    }

    /// <summary>
    /// One daemon (ours or qemu-storage-daemon) on the qcow2 image 'src', holding 4 MiB and 1 MiB
    /// of data: the steps of a scenario and the replies they record, paths made the same for both.
    /// </summary>
    private sealed class Session : IAsyncDisposable
    {
        private readonly TempDir _dir;
        private readonly string _tag;

        private Session(TempDir dir, string tag, BitmapDaemon d)
        {
            _dir = dir;
            _tag = tag;
            D = d;
        }

        public BitmapDaemon D { get; }

        public List<string> Replies { get; } = [];

        public string F(string name) => _dir[$"{_tag}-{name}.qcow2"];

        public static async Task<Session> StartAsync(TempDir dir, bool qsd, params string[] images)
        {
            var tag = qsd ? "qsd" : "es";
            var image = dir[$"{tag}-src.qcow2"];
            await QemuImgAsync("create", "-q", "-f", "qcow2", image, Size);
            foreach (var name in (string[])["tgt", .. images])
            {
                await QemuImgAsync("create", "-q", "-f", "qcow2", dir[$"{tag}-{name}.qcow2"], Size);
            }

            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", "-c", "write -P 0x12 10M 1M", image)).Check("qemu-io");
            return new Session(dir, tag, await BitmapDaemon.StartAsync(dir, qsd, image));
        }

        public async Task Step(string command, string args) =>
            Replies.Add(($"{command} {args}: " + await D.ReplyAsync(command, Args(args))).Replace(_dir[$"{_tag}-"], _dir["X-"], StringComparison.Ordinal));

        /// <summary>The node's named bitmaps (QEMU also lists the anonymous ones its backup job keeps; those are not compared).</summary>
        public async Task Query(string what, string node = "fmt") =>
            Replies.Add($"{what}: " + new JsonArray([.. ((JsonArray?)await D.BitmapsAsync(node) ?? []).Where(b => b!["name"] is not null).Select(b => b!.DeepClone())]).ToJsonString());

        public async Task<string> Ended(string job, string eventName = "BLOCK_JOB_COMPLETED")
        {
            JsonObject e;
            try
            {
                e = await D.Qmp.WaitEventAsync(eventName, e => e["data"]!["device"]!.GetValue<string>() == job).WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                throw new TimeoutException($"{_tag}: no {eventName} for {job} after:\n{string.Join('\n', Replies)}");
            }

            return $"{eventName} {job} error={(string?)e["data"]!["error"]}";
        }

        /// <summary>An incremental backup of <paramref name="device"/> with its bitmap into a new image over <paramref name="backing"/>.</summary>
        public async Task Incremental(string job, string target, string backing, string extra = "", string device = "fmt", string bitmap = "b0")
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", F(backing), "-F", "qcow2", F(target));
            await Step("drive-backup", IncrementalArgs(job, target, extra, device, bitmap));
        }

        public string IncrementalArgs(string job, string target, string extra = "", string device = "fmt", string bitmap = "b0") =>
            $$$"""{"job-id":"{{{job}}}","device":"{{{device}}}","target":"{{{F(target)}}}","format":"qcow2","mode":"existing","sync":"incremental","bitmap":"{{{bitmap}}}"{{{extra}}}}""";

        /// <summary>The chain ending at the target equals what the export serves now (no write since the backup).</summary>
        public async Task SameAsSource(string target, string export = "disk")
        {
            var r = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", F(target), D.Uri(export));
            Replies.Add($"compare {target}: {r.ExitCode} {r.Stdout.Trim()}");
        }

        public ValueTask DisposeAsync() => D.DisposeAsync();
    }
}
