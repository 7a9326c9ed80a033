using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// Pull-mode backup from a fleecing export, as QEMU 7.2 builds it: a copy-before-write filter over
/// the disk with a temporary qcow2 as its target, a snapshot-access node over the filter exported
/// over NBD. A full copy with nbdcopy taken while a libnbd writer keeps writing through the filter
/// equals the disk as it was when the filter was added; the same with the older recipe (backup
/// sync=none into an overlay whose backing is the disk). Each run is compared with qemu-storage-daemon.
/// </summary>
public sealed class FleecingTests
{
    private const string Size = "32M";

    private static JsonObject Args(string json) => (JsonObject)JsonNode.Parse(json)!;

    /// <summary>
    /// Writes random 4 KiB-aligned runs (4–256 KiB, a new byte pattern each) until the stop file
    /// exists and at least 64 writes are done; prints the number of writes.
    /// </summary>
    private const string Writer = """
        import nbd, os, random, sys
        h = nbd.NBD(); h.connect_uri(sys.argv[1])
        size = h.get_size()
        rng = random.Random(7)
        n = 0
        while not os.path.exists(sys.argv[2]) or n < 64:
            length = rng.randrange(1, 65) * 4096
            offset = rng.randrange(0, (size - length) // 4096 + 1) * 4096
            h.pwrite(bytes([n % 251 + 1]) * length, offset)
            n += 1
        h.flush()
        print(n)
        """;

    /// <summary>A source image with data, zeroes and holes, and its raw copy before any daemon touches it.</summary>
    private static async Task<(string Image, string Before)> SourceAsync(TempDir dir, string tag)
    {
        var image = dir[$"{tag}.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, Size)).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 12M", "-c", "write -z 4M 1M", "-c", "write -P 0x22 20M 3M", image)).Check("fill");
        var before = dir[$"{tag}-before.raw"];
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, before)).Check("convert");
        return (image, before);
    }

    /// <summary>One daemon's run: its tag, the source image and its raw copy from before, the temporary image, the replies to compare.</summary>
    private sealed record Run(string Tag, string Image, string Before, string Tmp, List<string> Replies);

    /// <summary>
    /// Runs <paramref name="scenario"/> on qemu-storage-daemon, then on ours, each with its own source
    /// and a temporary qcow2 (of the disk's size, or with <paramref name="overlay"/> one backed by the disk).
    /// </summary>
    private static async Task<Dictionary<bool, List<string>>> OnBothAsync(TempDir dir, bool overlay, Func<Run, BitmapDaemon, Task> scenario)
    {
        var results = new Dictionary<bool, List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            var tag = qsd ? "qsd" : "es";
            var (image, before) = await SourceAsync(dir, tag);
            var tmp = dir[$"{tag}-tmp.qcow2"];
            string[] create = overlay ? ["create", "-f", "qcow2", "-b", image, "-F", "qcow2", tmp] : ["create", "-f", "qcow2", tmp, Size];
            (await Tool.RunAsync("qemu-img", create)).Check("create tmp");
            await using var d = await BitmapDaemon.StartAsync(dir, qsd, image);
            await scenario(new Run(tag, image, before, tmp, results[qsd] = []), d);
        }

        return results;
    }

    /// <summary>nbdcopy of <paramref name="uri"/> while the writer writes through <paramref name="writerUri"/>; returns the copy and the writer's count.</summary>
    private static async Task<(string Copy, int Writes)> CopyWhileWritingAsync(TempDir dir, string tag, string uri, string writerUri)
    {
        await File.WriteAllTextAsync(dir["writer.py"], Writer);
        var stop = dir[$"{tag}-stop"];
        var writer = Tool.RunAsync("/usr/bin/python3", [dir["writer.py"], writerUri, stop], TimeSpan.FromMinutes(2));
        var copy = dir[$"{tag}-copy.raw"];
        try
        {
            // The copy starts once the writer is under way.
            await Task.Delay(200);
            (await Tool.RunAsync("nbdcopy", "--request-size=65536", uri, copy)).Check("nbdcopy");
        }
        finally
        {
            await File.WriteAllTextAsync(stop, string.Empty);
        }

        var writes = int.Parse((await writer).Check("writer").Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return (copy, writes);
    }

    private static async Task AssertSameBytesAsync(string expected, string actual, string what)
    {
        var r = await Tool.RunAsync("cmp", expected, actual);
        Assert.True(r.ExitCode == 0, $"{what}: {r.Stdout}{r.Stderr}");
    }

    [Fact]
    public async Task ASnapshotAccessExportServesThePointInTimeWhileTheDiskIsWrittenAsInQemu()
    {
        using var dir = new TempDir();
        var results = await OnBothAsync(dir, overlay: false, async (run, d) =>
        {
            var (tag, image, before, tmp, replies) = run;

            // The writer's export moves onto the filter, as a guest's device would.
            replies.Add(await d.ReplyAsync("block-export-del", Args("""{"id":"e0"}""")));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            replies.Add(await d.ReplyAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tmp","file":{"driver":"file","filename":"{{{tmp}}}"}}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"nope"}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp","on-cbw-error":"bogus"}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp","bitmap":{"node":"fmt","name":"nope"}}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp"}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"snapshot-access","node-name":"acc","file":"cbw"}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e1","node-name":"cbw","name":"live","writable":true}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"acc","name":"snap"}""")));

            // The filter's own bitmaps, shown without names as QEMU shows them: what is left to copy
            // on the disk, what the snapshot may read and what was copied on the filter.
            replies.Add((await d.BitmapsAsync("fmt"))!.ToJsonString());
            replies.Add((await d.BitmapsAsync("cbw"))!.ToJsonString());

            var (copy, writes) = await CopyWhileWritingAsync(dir, tag, d.Uri("snap"), d.Uri("live"));
            Assert.True(writes >= 64, $"{tag}: {writes} writes");
            await AssertSameBytesAsync(before, copy, $"{tag}: the fleecing copy is the disk as it was");

            // The writes did reach the disk, and the temporary image holds old data of what they covered.
            var now = dir[$"{tag}-now.raw"];
            (await Tool.RunAsync("nbdcopy", d.Uri("live"), now)).Check("nbdcopy live");
            Assert.NotEqual(0, (await Tool.RunAsync("cmp", "-s", before, now)).ExitCode);

            // The snapshot is read-only; writing is refused as QEMU refuses it, and the daemon stays up.
            var write = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write 0 4k", d.Uri("snap"));
            replies.Add(write.Stdout + write.Stderr.Replace(d.Socket, "SOCK", StringComparison.Ordinal));

            replies.Add(await d.ReplyAsync("block-export-del", Args("""{"id":"e2"}""")));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            replies.Add(await d.ReplyAsync("blockdev-del", Args("""{"node-name":"acc"}""")));
            replies.Add(await d.ReplyAsync("block-export-del", Args("""{"id":"e1"}""")));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            replies.Add(await d.ReplyAsync("blockdev-del", Args("""{"node-name":"cbw"}""")));
            replies.Add(await d.ReplyAsync("blockdev-del", Args("""{"node-name":"tmp"}""")));
            Assert.Equal(0, await d.StopAsync());
            (await Tool.RunAsync("qemu-img", "check", image)).Check($"{tag}: check");
            (await Tool.RunAsync("qemu-img", "check", tmp)).Check($"{tag}: check tmp");
            Assert.True(await DataBytesAsync(tmp) > 0, $"{tag}: the temporary image holds old data");
        });

        Assert.Equal(results[true], results[false]);
        Assert.Contains(results[false], r => r.Contains("on-cbw-error", StringComparison.Ordinal) && r.Contains("bogus", StringComparison.Ordinal));
        Assert.Contains("""[{"recording":false,"persistent":false,"busy":false,"granularity":65536,"count":33554432}]""", results[false]);
    }

    [Fact]
    public async Task AFailedCopyBreaksTheGuestWriteOrTheSnapshot()
    {
        // A temporary image of 1 MiB cannot take the old data of a write past it: the copy fails.
        // qemu-storage-daemon 7.2 aborts on that write past the end of its target (an assertion in
        // bdrv_co_write_req_prepare), so it cannot be the oracle here; the outcomes are QEMU's
        // documented ones for on-cbw-error.
        using var dir = new TempDir();
        var replies = new List<string>();
        {
            const string tag = "es";
            var (image, _) = await SourceAsync(dir, tag);
            await using var d = await BitmapDaemon.StartAsync(dir, false, image);
            await d.Qmp.ExecuteAsync("block-export-del", Args("""{"id":"e0"}"""));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            foreach (var mode in new[] { "break-guest-write", "break-snapshot" })
            {
                var tmp = dir[$"{tag}-{mode}.qcow2"];
                (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", tmp, "1M")).Check("create tmp");
                await d.Qmp.ExecuteAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tmp","file":{"driver":"file","filename":"{{{tmp}}}"}}"""));
                await d.Qmp.ExecuteAsync("blockdev-add", Args($$$"""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp","on-cbw-error":"{{{mode}}}","cbw-timeout":30}"""));
                await d.Qmp.ExecuteAsync("blockdev-add", Args("""{"driver":"snapshot-access","node-name":"acc","file":"cbw"}"""));
                await d.Qmp.ExecuteAsync("block-export-add", Args("""{"type":"nbd","id":"e1","node-name":"cbw","name":"live","writable":true}"""));
                await d.Qmp.ExecuteAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"acc","name":"snap"}"""));
                foreach (var command in new[] { "write -P 0x66 0 64k", "write -P 0x67 8M 64k" })
                {
                    var w = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", command, d.Uri("live"));
                    replies.Add($"{mode} {command}: {(w.Stdout.Contains("failed", StringComparison.Ordinal) ? w.Stdout.Trim() : "ok")}");
                    var r = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x11 0 64k", d.Uri("snap"));
                    replies.Add($"{mode} snapshot after {command}: {(r.Stdout.Contains("failed", StringComparison.Ordinal) || r.Stdout.Contains("fail", StringComparison.Ordinal) ? r.Stdout.Trim() : "ok")}");
                }

                foreach (var (command, args) in new[]
                {
                    ("block-export-del", """{"id":"e2"}"""), ("block-export-del", """{"id":"e1"}"""),
                })
                {
                    await d.Qmp.ExecuteAsync(command, Args(args));
                    await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
                }

                foreach (var node in new[] { "acc", "cbw", "tmp" })
                {
                    replies.Add(await d.ReplyAsync("blockdev-del", Args($$"""{"node-name":"{{node}}"}""")));
                }
            }

            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Contains(replies, r => r.StartsWith("break-guest-write write -P 0x67 8M 64k: write failed", StringComparison.Ordinal));
        Assert.Contains("break-snapshot write -P 0x67 8M 64k: ok", replies);
        Assert.Contains(replies, r => r.StartsWith("break-snapshot snapshot after write -P 0x67 8M 64k: read failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AnIncrementalPullReadsOnlyTheBitmapsGranulesAsInQemu()
    {
        using var dir = new TempDir();
        var results = await OnBothAsync(dir, overlay: false, async (run, d) =>
        {
            var (tag, image, _, tmp, replies) = run;
            await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", Args("""{"node":"fmt","name":"b0","granularity":65536}"""));
            await d.WriteAsync("write -P 0x33 0 4k", "write -P 0x34 5M 200k", "write -z 20M 64k", "write -P 0x35 32767k 1k");
            var expected = dir[$"{tag}-expected.raw"];
            (await Tool.RunAsync("nbdcopy", d.Uri(), expected)).Check("nbdcopy disk");
            await d.Qmp.ExecuteAsync("block-dirty-bitmap-disable", Args("""{"node":"fmt","name":"b0"}"""));
            await d.Qmp.ExecuteAsync("block-export-del", Args("""{"id":"e0"}"""));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            await d.Qmp.ExecuteAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tmp","file":{"driver":"file","filename":"{{{tmp}}}"}}"""));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp","bitmap":{"node":"fmt","name":"b0"}}""")));
            replies.Add(await d.ReplyAsync("blockdev-add", Args("""{"driver":"snapshot-access","node-name":"acc","file":"cbw"}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e1","node-name":"cbw","name":"live","writable":true}""")));
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e2","node-name":"acc","name":"snap","bitmaps":[{"node":"fmt","name":"b0"}]}""")));

            // The map is the granules written; those read as they were, even after the writer overwrites them.
            var map = await BitmapDaemon.MapAsync(d.Uri("snap"), "qemu:dirty-bitmap:b0");
            replies.Add(map);
            var live = new List<string> { "-f", "raw", "-c", "write -P 0x44 0 64k", "-c", "write -P 0x45 5M 1M", d.Uri("live") };
            (await Tool.RunAsync("qemu-io", live)).Check("qemu-io live");
            foreach (var line in map.Split('\n').Select(l => l.Split(' ')).Where(l => l[2] == "1"))
            {
                var (offset, length) = (long.Parse(line[0]), int.Parse(line[1]));
                var read = await Tool.PythonAsync(
                    $"import nbd; h=nbd.NBD(); h.connect_uri('{d.Uri("snap")}'); print(h.pread({length}, {offset}).hex())");
                using var f = File.OpenRead(expected);
                var want = new byte[length];
                f.Seek(offset, SeekOrigin.Begin);
                f.ReadExactly(want);
                Assert.Equal(Convert.ToHexString(want), read.Check("pread").Stdout.Trim().ToUpperInvariant());
            }

            // What the bitmap does not mark is not kept: reading it is refused.
            var outside = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 1M 64k", d.Uri("snap"));
            replies.Add(outside.Stdout + outside.Stderr.Replace(d.Socket, "SOCK", StringComparison.Ordinal));
            Assert.Equal(0, await d.StopAsync());
        });

        Assert.Equal(results[true], results[false]);
        Assert.Equal(
            "0 65536 1\n65536 5177344 0\n5242880 262144 1\n5505024 15466496 0\n20971520 65536 1\n21037056 12451840 0\n33488896 65536 1",
            results[false][4]);
        Assert.Contains("read failed: Invalid argument", results[false][5], StringComparison.Ordinal);
    }

    [Fact]
    public async Task BackupSyncNoneIntoAnOverlayServesThePointInTimeAsInQemu()
    {
        using var dir = new TempDir();
        var results = await OnBothAsync(dir, overlay: true, async (run, d) =>
        {
            var (tag, image, before, tmp, replies) = run;
            replies.Add(await d.ReplyAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tmp","file":{"driver":"file","filename":"{{{tmp}}}"},"backing":"fmt"}""")));
            replies.Add(await d.ReplyAsync("blockdev-backup", Args("""{"job-id":"fleece","device":"fmt","target":"tmp","sync":"none"}""")));
            replies.Add((await d.BitmapsAsync("fmt"))!.ToJsonString());
            replies.Add(await d.ReplyAsync("block-export-add", Args("""{"type":"nbd","id":"e1","node-name":"tmp","name":"snap"}""")));

            var (copy, writes) = await CopyWhileWritingAsync(dir, tag, d.Uri("snap"), d.Uri());
            Assert.True(writes >= 64, $"{tag}: {writes} writes");
            await AssertSameBytesAsync(before, copy, $"{tag}: the overlay is the disk as it was");

            replies.Add(await d.ReplyAsync("block-export-del", Args("""{"id":"e1"}""")));
            await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
            replies.Add(await d.ReplyAsync("block-job-cancel", Args("""{"device":"fleece"}""")));
            var cancelled = await d.Qmp.WaitEventAsync("BLOCK_JOB_CANCELLED");
            replies.Add(cancelled["data"]!["device"]!.ToJsonString());
            replies.Add(await d.ReplyAsync("blockdev-del", Args("""{"node-name":"tmp"}""")));
            Assert.Equal(0, await d.StopAsync());
            (await Tool.RunAsync("qemu-img", "check", image)).Check($"{tag}: check");
        });

        Assert.Equal(results[true], results[false]);
    }

    [Fact]
    public async Task APushBackupFromTheSnapshotWithDiscardSourceLeavesTheFleecingImageEmpty()
    {
        // discard-source is QEMU 9.1's; qemu-storage-daemon 7.2 has no oracle for it. Without it the
        // fleecing image keeps the old data the writes pushed out; with it the backup gives each
        // range up once copied.
        using var dir = new TempDir();
        foreach (var discard in new[] { false, true })
        {
            var tag = discard ? "discard" : "keep";
            var (image, before) = await SourceAsync(dir, tag);
            var tmp = dir[$"{tag}-tmp.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", tmp, Size)).Check("create tmp");
            var target = dir[$"{tag}-target.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", target, Size)).Check("create target");
            await using var d = await BitmapDaemon.StartAsync(dir, false, image);
            await d.Qmp.ExecuteAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tmp","discard":"unmap","file":{"driver":"file","filename":"{{{tmp}}}"}}"""));
            await d.Qmp.ExecuteAsync("blockdev-add", Args("""{"driver":"copy-before-write","node-name":"cbw","file":"fmt","target":"tmp"}"""));
            await d.Qmp.ExecuteAsync("blockdev-add", Args("""{"driver":"snapshot-access","node-name":"acc","file":"cbw","discard":"unmap"}"""));
            await d.Qmp.ExecuteAsync("blockdev-add", Args($$$"""{"driver":"qcow2","node-name":"tgt","file":{"driver":"file","filename":"{{{target}}}"}}"""));

            // Writes through the disk's own export: the filter's copy covers them too.
            await d.WriteAsync("write -P 0x55 0 2M", "write -P 0x56 21M 1M");
            var backup = Args("""{"job-id":"push","device":"acc","target":"tgt","sync":"full"}""");
            backup["discard-source"] = discard;
            await d.Qmp.ExecuteAsync("blockdev-backup", backup);
            var done = await d.Qmp.WaitEventAsync("BLOCK_JOB_COMPLETED");
            Assert.Null(done["data"]!["error"]);
            await d.Qmp.ExecuteAsync("blockdev-del", Args("""{"node-name":"tgt"}"""));

            // Given up, a range of the snapshot can no longer be read.
            await d.Qmp.ExecuteAsync("block-export-add", Args("""{"type":"nbd","id":"e1","node-name":"acc","name":"snap"}"""));
            var reread = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 0 64k", d.Uri("snap"));
            Assert.Equal(discard, reread.Stdout.Contains("read failed: Invalid argument", StringComparison.Ordinal));
            Assert.Equal(0, await d.StopAsync());
            var copy = dir[$"{tag}-target.raw"];
            (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", target, copy)).Check("convert");
            await AssertSameBytesAsync(before, copy, $"{tag}: the backup is the disk as it was");
            (await Tool.RunAsync("qemu-img", "check", tmp)).Check("check tmp");
            var held = await DataBytesAsync(tmp);
            if (discard)
            {
                Assert.Equal(0, held);
            }
            else
            {
                Assert.True(held >= 3 << 20, $"the fleecing image keeps {held} bytes");
            }
        }
    }

    /// <summary>Bytes the image's own layer holds as data (qemu-img map).</summary>
    private static async Task<long> DataBytesAsync(string image)
    {
        var map = (JsonArray)JsonNode.Parse((await Tool.RunAsync("qemu-img", "map", "-U", "-f", "qcow2", "--output=json", image)).Check("map").Stdout)!;
        return map.Where(e => e!["data"]!.GetValue<bool>() && e["depth"]!.GetValue<int>() == 0).Sum(e => e!["length"]!.GetValue<long>());
    }
}
