using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// External and internal qcow2 snapshots and qcow2 creation over QMP on the real process, checked
/// afterwards with qemu-img and qemu-io (with -U: the daemon still holds its locks).
/// </summary>
public sealed class SnapshotTests
{
    private static async Task<Daemon> StartAsync(TempDir dir, params string[] images)
    {
        var args = new List<string>
        {
            "--chardev", $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off", "--monitor", "chardev=m0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
        };
        foreach (var name in images)
        {
            args.AddRange(["--blockdev", $"driver=file,node-name={name}-file,filename={dir[name + ".qcow2"]}"]);
            args.AddRange(["--blockdev", $"driver=qcow2,node-name={name},file={name}-file"]);
            args.AddRange(["--export", $"type=nbd,id=e-{name},node-name={name},name={name},writable=on"]);
        }

        return await Daemon.StartAsync(dir, [.. args]);
    }

    private static async Task CreateAsync(string path, string size = "64M") =>
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", path, size)).Check("qemu-img create");

    private static async Task NbdIoAsync(TempDir dir, string export, params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands)
        {
            args.AddRange(["-c", c]);
        }

        args.Add($"nbd+unix:///{export}?socket={dir["nbd.sock"]}");
        var r = await Tool.RunAsync("qemu-io", args);
        Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("fail", StringComparison.OrdinalIgnoreCase), r.Stdout + r.Stderr);
    }

    /// <summary>qemu-io on one layer alone (backing=null), read-only and without locking.</summary>
    private static async Task LayerReadsAsync(string image, params string[] reads)
    {
        var args = new List<string> { "-r", "-U" };
        foreach (var c in reads)
        {
            args.AddRange(["-c", c]);
        }

        args.Add($$"""json:{"driver":"qcow2","file":{"driver":"file","filename":"{{image}}"},"backing":null}""");
        var r = await Tool.RunAsync("qemu-io", args);
        Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("Pattern verification failed"), $"{image}: {r.Stdout}{r.Stderr}");
    }

    private static JsonObject SnapshotSync(string node, string file, string newNode) => new()
    {
        ["node-name"] = node,
        ["snapshot-file"] = file,
        ["snapshot-node-name"] = newNode,
        ["format"] = "qcow2",
    };

    [Fact]
    public async Task ChainBuiltWhileWritingKeepsEachPatternInItsLayer()
    {
        using var dir = new TempDir();
        await CreateAsync(dir["A.qcow2"]);
        await using var d = await StartAsync(dir, "A");
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);

        // [A] <- [B] <- [C] <- [D]: each layer gets its own pattern, written through the export
        // after the snapshot that made the layer active (partly over older data, partly unaligned).
        await NbdIoAsync(dir, "A", "write -P 0xa1 0 1M");
        await qmp.ExecuteAsync("blockdev-snapshot-sync", SnapshotSync("A", dir["B.qcow2"], "B"));
        await NbdIoAsync(dir, "A", "write -P 0xb2 512K 1M");
        await qmp.ExecuteAsync("blockdev-snapshot-sync", SnapshotSync("B", dir["C.qcow2"], "C"));
        await NbdIoAsync(dir, "A", "write -P 0xc3 2098152 70000");
        await qmp.ExecuteAsync("blockdev-snapshot-sync", SnapshotSync("C", dir["D.qcow2"], "D"));
        await NbdIoAsync(dir, "A", "write -P 0xd4 4M 64K", "write -z 0 4K");

        var nodes = (JsonArray)await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        foreach (var (name, ro) in new[] { ("A", true), ("B", true), ("C", true), ("D", false) })
        {
            Assert.Contains(nodes, n => n!["node-name"]!.GetValue<string>() == name && n["ro"]!.GetValue<bool>() == ro);
        }

        var info = await Tool.RunAsync("qemu-img", "info", "-U", "--backing-chain", "--output=json", dir["D.qcow2"]);
        info.Check("qemu-img info");
        var chain = JsonDocument.Parse(info.Stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(["D", "C", "B", "A"], chain.Select(e => Path.GetFileNameWithoutExtension(e.GetProperty("filename").GetString()!)));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(chain[i + 1].GetProperty("filename").GetString(), chain[i].GetProperty("full-backing-filename").GetString());
            Assert.Equal("qcow2", chain[i].GetProperty("backing-filename-format").GetString());
            Assert.Equal(64 << 20, chain[i].GetProperty("virtual-size").GetInt64());
        }

        await LayerReadsAsync(dir["A.qcow2"], "read -P 0xa1 0 1M", "read -P 0 1M 63M");
        await LayerReadsAsync(dir["B.qcow2"], "read -P 0 0 512K", "read -P 0xb2 512K 1M", "read -P 0 1536K 62M");
        await LayerReadsAsync(dir["C.qcow2"], "read -P 0 0 2M", "read -P 0xc3 2098152 70000", "read -P 0 4M 60M");
        await LayerReadsAsync(dir["D.qcow2"], "read -P 0 0 4K", "read -P 0xd4 4M 64K", "read -P 0 5M 59M");

        // The whole chain reads as the layers composed.
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", dir["expected.raw"], "64M")).Check("expected");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0xa1 4K 508K", "-c", "write -P 0xb2 512K 1M",
            "-c", "write -P 0xc3 2098152 70000", "-c", "write -P 0xd4 4M 64K", dir["expected.raw"])).Check("expected");

        var cmp = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", dir["expected.raw"], dir["D.qcow2"]);
        Assert.True(cmp.ExitCode == 0, cmp.Stdout + cmp.Stderr);
    }

    // Writes 64 KiB blocks round-robin over 16 MiB until the stop file appears, then prints the
    // pattern last written to each block (every write acknowledged before the next one starts).
    // Every 16 writes it replaces the count file with the number acknowledged so far.
    private const string Writer = """
        import nbd, os, sys
        h = nbd.NBD(); h.connect_uri(sys.argv[1])
        last = {}
        n = 0
        while not os.path.exists(sys.argv[2]) or n < 512:
            block = n % 256
            pat = n % 250 + 1
            h.pwrite(bytes([pat]) * 65536, block * 65536)
            last[block] = pat
            n += 1
            if n % 16 == 0:
                with open(sys.argv[3] + ".tmp", "w") as f: f.write(str(n))
                os.replace(sys.argv[3] + ".tmp", sys.argv[3])
        h.flush()
        for block, pat in sorted(last.items()): print(block, pat)
        """;

    [Fact]
    public async Task SnapshotsTakenDuringWritesLoseNothing()
    {
        using var dir = new TempDir();
        await CreateAsync(dir["A.qcow2"]);
        await File.WriteAllTextAsync(dir["writer.py"], Writer);
        await using var d = await StartAsync(dir, "A");
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);
        var writer = Tool.RunAsync("/usr/bin/python3", [dir["writer.py"], $"nbd+unix:///A?socket={dir["nbd.sock"]}", dir["stop"], dir["count"]], TimeSpan.FromMinutes(2));
        int Acknowledged() => File.Exists(dir["count"]) ? int.Parse(File.ReadAllText(dir["count"]), CultureInfo.InvariantCulture) : 0;
        var previous = "A";
        foreach (var layer in new[] { "B", "C", "D" })
        {
            // Each layer gets writes of its own: the next snapshot waits until 32 more are acknowledged.
            var target = Acknowledged() + 32;
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Acknowledged() < target)
            {
                Assert.True(DateTime.UtcNow < deadline && !writer.IsCompleted, $"the writer stopped making progress before layer {layer}");
                await Task.Delay(10);
            }

            await qmp.ExecuteAsync("blockdev-snapshot-sync", SnapshotSync(previous, dir[layer + ".qcow2"], layer));
            previous = layer;
        }

        await File.WriteAllTextAsync(dir["stop"], string.Empty);
        var written = (await writer).Check("writer").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')).ToList();
        Assert.Equal(256, written.Count);
        foreach (var layer in new[] { "A", "B", "C", "D" })
        {
            (await Tool.RunAsync("qemu-img", "check", "-U", dir[layer + ".qcow2"])).Check($"check {layer}");
        }

        // The snapshots really were taken mid-stream: every layer holds some of the writes.
        foreach (var layer in new[] { "A", "B", "C", "D" })
        {
            var map = await Tool.RunAsync("qemu-img", "map", "-U", "--output=json", $$"""json:{"driver":"qcow2","file":{"driver":"file","filename":"{{dir[layer + ".qcow2"]}}"},"backing":null}""");
            Assert.Contains("\"data\": true", map.Check($"map {layer}").Stdout);
        }

        var reads = written.SelectMany(w => new[] { "-c", $"read -P {w[1]} {long.Parse(w[0]) * 65536} 64K" });
        var r = await Tool.RunAsync("qemu-io", ["-r", "-U", "-f", "qcow2", .. reads, dir["D.qcow2"]]);
        Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("Pattern verification failed"), r.Stdout + r.Stderr);
    }

    [Fact]
    public async Task ExistingOverlayModeAndChangeBackingFile()
    {
        using var dir = new TempDir();
        await CreateAsync(dir["A.qcow2"]);
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-b", dir["A.qcow2"], "-F", "qcow2", dir["B.qcow2"])).Check("overlay");
        await using var d = await StartAsync(dir, "A");
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);
        await NbdIoAsync(dir, "A", "write -P 0x31 0 64K");

        var args = SnapshotSync("A", dir["B.qcow2"], "B");
        args["mode"] = "existing";
        await qmp.ExecuteAsync("blockdev-snapshot-sync", args);
        await NbdIoAsync(dir, "A", "write -P 0x32 64K 64K", "read -P 0x31 0 64K");
        await LayerReadsAsync(dir["A.qcow2"], "read -P 0x31 0 64K", "read -P 0 64K 64K");
        await LayerReadsAsync(dir["B.qcow2"], "read -P 0 0 64K", "read -P 0x32 64K 64K");

        // The name recorded in B's header becomes relative; the chain still opens from B's directory.
        await qmp.ExecuteAsync("change-backing-file", new JsonObject { ["device"] = "B", ["image-node-name"] = "B", ["backing-file"] = "A.qcow2" });
        var info = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", dir["B.qcow2"])).Check("info").Stdout).RootElement;
        Assert.Equal("A.qcow2", info.GetProperty("backing-filename").GetString());
        Assert.Equal("qcow2", info.GetProperty("backing-filename-format").GetString());
        (await Tool.RunAsync("qemu-img", "check", "-U", dir["B.qcow2"])).Check("check");
        (await Tool.RunAsync("qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0x31 0 64K", "-c", "read -P 0x32 64K 64K", dir["B.qcow2"])).Check("chain read");
    }

    [Fact]
    public async Task TransactionWhoseSecondSnapshotFailsLeavesBothNodesAsTheyWere()
    {
        using var dir = new TempDir();
        await CreateAsync(dir["A.qcow2"]);
        await CreateAsync(dir["B.qcow2"]);
        await using var d = await StartAsync(dir, "A", "B");
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);
        var before = (await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true })).ToJsonString();

        var actions = new JsonArray(
            new JsonObject { ["type"] = "blockdev-snapshot-sync", ["data"] = SnapshotSync("A", dir["A-over.qcow2"], "A-over") },
            new JsonObject { ["type"] = "blockdev-snapshot-sync", ["data"] = SnapshotSync("B", dir["missing/B-over.qcow2"], "B-over") });
        var (cls, _) = await qmp.ErrorAsync("transaction", new JsonObject { ["actions"] = actions });
        Assert.Equal("GenericError", cls);

        Assert.False(File.Exists(dir["A-over.qcow2"]));
        var after = (await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true })).ToJsonString();
        Assert.Equal(before, after);

        // Both nodes still take writes, into their own images.
        await NbdIoAsync(dir, "A", "write -P 0x11 0 64K");
        await NbdIoAsync(dir, "B", "write -P 0x22 0 64K");
        await LayerReadsAsync(dir["A.qcow2"], "read -P 0x11 0 64K");
        await LayerReadsAsync(dir["B.qcow2"], "read -P 0x22 0 64K");
        var info = await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", dir["A.qcow2"]);
        Assert.False(JsonDocument.Parse(info.Check("info").Stdout).RootElement.TryGetProperty("backing-filename", out _));
    }

    [Fact]
    public async Task InternalSnapshotsAreCreatedAndDeleted()
    {
        using var dir = new TempDir();
        var image = dir["A.qcow2"];
        await CreateAsync(image);
        await using var d = await StartAsync(dir, "A");
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);

        await NbdIoAsync(dir, "A", "write -P 0x51 0 128K");
        await qmp.ExecuteAsync("blockdev-snapshot-internal-sync", new JsonObject { ["device"] = "A", ["name"] = "s1" });
        await NbdIoAsync(dir, "A", "write -P 0x52 64K 128K");
        await qmp.ExecuteAsync("blockdev-snapshot-internal-sync", new JsonObject { ["device"] = "A", ["name"] = "s2" });
        await NbdIoAsync(dir, "A", "write -P 0x53 0 4K");
        Assert.Equal("GenericError", (await qmp.ErrorAsync("blockdev-snapshot-internal-sync", new JsonObject { ["device"] = "A", ["name"] = "s1" })).Class);

        var list = (await Tool.RunAsync("qemu-img", "snapshot", "-l", "-U", image)).Check("snapshot -l").Stdout;
        Assert.Contains(" s1 ", list);
        Assert.Contains(" s2 ", list);
        (await Tool.RunAsync("qemu-img", "convert", "-U", "-l", "snapshot.name=s1", "-O", "raw", image, dir["s1.raw"])).Check("convert s1");
        var s1 = await File.ReadAllBytesAsync(dir["s1.raw"]);
        Assert.True(s1.AsSpan(0, 128 << 10).IndexOfAnyExcept((byte)0x51) < 0);
        Assert.True(s1.AsSpan(128 << 10).IndexOfAnyExcept((byte)0) < 0);

        var deleted = await qmp.ExecuteAsync("blockdev-snapshot-delete-internal-sync", new JsonObject { ["device"] = "A", ["name"] = "s1" });
        Assert.Equal("s1", deleted["name"]!.GetValue<string>());
        Assert.Equal("GenericError", (await qmp.ErrorAsync("blockdev-snapshot-delete-internal-sync", new JsonObject { ["device"] = "A", ["name"] = "s1" })).Class);
        list = (await Tool.RunAsync("qemu-img", "snapshot", "-l", "-U", image)).Check("snapshot -l").Stdout;
        Assert.DoesNotContain(" s1 ", list);
        Assert.Contains(" s2 ", list);
        (await Tool.RunAsync("qemu-img", "check", "-U", image)).Check("qemu-img check");

        await LayerReadsAsync(image, "read -P 0x53 0 4K", "read -P 0x51 4K 60K", "read -P 0x52 64K 128K");
        (await Tool.RunAsync("qemu-img", "convert", "-U", "-l", "snapshot.name=s2", "-O", "raw", image, dir["s2.raw"])).Check("convert s2");
        var s2 = await File.ReadAllBytesAsync(dir["s2.raw"]);
        Assert.True(s2.AsSpan(0, 64 << 10).IndexOfAnyExcept((byte)0x51) < 0);
        Assert.True(s2.AsSpan(64 << 10, 128 << 10).IndexOfAnyExcept((byte)0x52) < 0);
    }

    [Fact]
    public async Task BlockdevCreateMakesACleanQcow2Image()
    {
        using var dir = new TempDir();
        await using var d = await StartAsync(dir);
        await using var qmp = await QmpClient.ConnectAsync(dir["m0.sock"]);
        var image = dir["new.qcow2"];

        async Task RunJobAsync(string id, JsonObject options)
        {
            await qmp.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = options });
            await qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["id"]!.GetValue<string>() == id && e["data"]!["status"]!.GetValue<string>() == "concluded");
            var job = ((JsonArray)await qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
            Assert.Null(job["error"]);
            await qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id });
        }

        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", dir["base.raw"], "1G")).Check("base");
        await RunJobAsync("mkfile", new JsonObject { ["driver"] = "file", ["filename"] = image, ["size"] = 0 });
        await qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "proto", ["filename"] = image });
        await RunJobAsync("mkqcow2", new JsonObject
        {
            ["driver"] = "qcow2",
            ["file"] = "proto",
            ["size"] = 1L << 30,
            ["cluster-size"] = 131072,
            ["lazy-refcounts"] = true,
            ["backing-file"] = "base.raw",
            ["backing-fmt"] = "raw",
        });

        (await Tool.RunAsync("qemu-img", "check", "-U", image)).Check("qemu-img check");
        var info = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", image)).Check("info").Stdout).RootElement;
        Assert.Equal("qcow2", info.GetProperty("format").GetString());
        Assert.Equal(1L << 30, info.GetProperty("virtual-size").GetInt64());
        Assert.Equal(131072, info.GetProperty("cluster-size").GetInt32());
        Assert.Equal("base.raw", info.GetProperty("backing-filename").GetString());
        Assert.Equal("raw", info.GetProperty("backing-filename-format").GetString());
        Assert.True(info.GetProperty("format-specific").GetProperty("data").GetProperty("lazy-refcounts").GetBoolean());

        // Version 2 with metadata preallocation; version 3 with every feature and an external raw data file.
        var v2 = dir["v2.qcow2"];
        await RunJobAsync("mkv2file", new JsonObject { ["driver"] = "file", ["filename"] = v2, ["size"] = 0 });
        await qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "v2proto", ["filename"] = v2 });
        await RunJobAsync("mkv2", new JsonObject
        {
            ["driver"] = "qcow2", ["file"] = "v2proto", ["size"] = 8 << 20, ["version"] = "v2", ["preallocation"] = "metadata",
        });
        var v3 = dir["v3.qcow2"];
        var data = dir["v3.data"];
        foreach (var (file, node) in new[] { (v3, "v3proto"), (data, "v3data") })
        {
            await RunJobAsync("mk" + node, new JsonObject { ["driver"] = "file", ["filename"] = file, ["size"] = 0 });
            await qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = node, ["filename"] = file });
        }

        await RunJobAsync("mkv3", new JsonObject
        {
            ["driver"] = "qcow2", ["file"] = "v3proto", ["size"] = 8 << 20, ["version"] = "v3", ["data-file"] = "v3data",
            ["data-file-raw"] = true, ["extended-l2"] = true, ["compression-type"] = "zstd", ["refcount-bits"] = 8,
        });
        var v2Info = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", v2)).Check("info").Stdout).RootElement;
        Assert.Equal("0.10", v2Info.GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString());
        var v2Map = (await Tool.RunAsync("qemu-img", "map", "-U", "--output=json", v2)).Check("map").Stdout;
        Assert.DoesNotContain("\"present\": false", v2Map);
        var v3Data = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", v3)).Check("info").Stdout)
            .RootElement.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(data, v3Data.GetProperty("data-file").GetString());
        Assert.True(v3Data.GetProperty("data-file-raw").GetBoolean());
        Assert.True(v3Data.GetProperty("extended-l2").GetBoolean());
        Assert.Equal("zstd", v3Data.GetProperty("compression-type").GetString());
        Assert.Equal(8, v3Data.GetProperty("refcount-bits").GetInt32());
        foreach (var created in new[] { v2, v3 })
        {
            (await Tool.RunAsync("qemu-img", "check", "-U", created)).Check($"check {created}");
        }

        // A bad option fails the job with QEMU's message, and the monitor goes on.
        await qmp.ExecuteAsync("blockdev-create", new JsonObject
        {
            ["job-id"] = "bad",
            ["options"] = new JsonObject { ["driver"] = "qcow2", ["file"] = "proto", ["size"] = 1 << 20, ["cluster-size"] = 1000 },
        });
        await qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["id"]!.GetValue<string>() == "bad" && e["data"]!["status"]!.GetValue<string>() == "concluded");
        var bad = ((JsonArray)await qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == "bad")!;
        Assert.Equal("Cluster size must be a power of two between 512 and 2048k", bad["error"]!.GetValue<string>());
    }
}
