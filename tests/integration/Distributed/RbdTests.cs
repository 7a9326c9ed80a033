using System.Diagnostics;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Distributed;

/// <summary>
/// The rbd driver against the real cluster scripts/test starts: qemu-img with its own rbd driver and
/// our exports see the same bytes; jobs write into rbd images; bad locations fail as in QEMU.
/// </summary>
public sealed class RbdTests
{
    /// <summary>How long the driver lets a request to the cluster take when the configuration sets no time-out (RbdCluster.RequestTimeout).</summary>
    private const int RequestTimeoutSeconds = 30;

    private static async Task<string> RandomFileAsync(TempDir dir, string name, int mib)
    {
        var file = dir[name];
        await File.WriteAllBytesAsync(file, RandomBytes(mib << 20));
        return file;
    }

    private static byte[] RandomBytes(int length)
    {
        var data = new byte[length];
        Random.Shared.NextBytes(data);
        return data;
    }

    /// <summary>Data extents (start, length) of qemu-img map's JSON, adjacent ones merged.</summary>
    private static async Task<List<(long, long)>> DataExtentsAsync(string image, string format = "raw")
    {
        var r = (await Tool.RunAsync("qemu-img", "map", "-U", "--output=json", "-f", format, image)).Check("qemu-img map");
        var list = new List<(long Start, long Length)>();
        foreach (var e in JsonNode.Parse(r.Stdout)!.AsArray())
        {
            if (!e!["data"]!.GetValue<bool>())
            {
                continue;
            }

            var (start, length) = (e["start"]!.GetValue<long>(), e["length"]!.GetValue<long>());
            if (list.Count > 0 && list[^1].Start + list[^1].Length == start)
            {
                list[^1] = (list[^1].Start, list[^1].Length + length);
            }
            else
            {
                list.Add((start, length));
            }
        }

        return list;
    }

    /// <summary>
    /// qemu-img convert writes an rbd image; our NBD export of it reads equal and maps the same
    /// allocation; our writes (data, zeroes, discard) read back through qemu-img's own driver.
    /// </summary>
    [Fact]
    public async Task QemuImgWritesReadEqualThroughOurExportAndOurWritesReadBackThroughQemuImg()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("conv");
        var local = await RandomFileAsync(dir, "data.raw", 6);
        await QemuImgAsync("create", "-q", "-f", "raw", Ceph.FileName(image), "64M");
        await QemuImgAsync("convert", "-n", "-f", "raw", "-O", "raw", local, Ceph.FileName(image));
        await using var d = await StartAsync(dir, "a");
        await d.Qmp.ExecuteAsync("blockdev-add", Ceph.Node("r0", image));
        await d.ExportAsync("r0");
        await AssertSameAsync(Ceph.FileName(image), d.NbdUri("r0"), "raw", "raw");
        var ours = await DataExtentsAsync(d.NbdUri("r0"));
        Assert.Equal(await DataExtentsAsync(Ceph.FileName(image)), ours);
        Assert.Equal([(0L, 8L << 20)], ours);

        await QemuIoAsync(d.NbdUri("r0"), "nbd", "write -P 0x5c 40M 1M", "write -z 1M 512k", "discard 4M 4M", "flush");
        await QemuIoAsync(Ceph.FileName(image), "raw", "read -P 0x5c 40M 1M", "read -P 0 1M 512k", "read -P 0 4M 4M");
        await AssertSameAsync(Ceph.FileName(image), d.NbdUri("r0"), "raw", "raw");
    }

    /// <summary>An image made by blockdev-create (with its object size) and served read-write over FUSE.</summary>
    [Fact]
    public async Task BlockdevCreateMakesAnImageWithItsObjectSizeThatFuseServes()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("made");
        await using var d = await StartAsync(dir, "a");
        Assert.Null(await d.BlockdevCreateAsync("c0", new JsonObject
        {
            ["driver"] = "rbd", ["location"] = Ceph.Options(image), ["size"] = 32 << 20, ["cluster-size"] = 1 << 20,
        }));
        var info = JsonNode.Parse((await Tool.RunAsync("rbd", "-c", Ceph.Conf, "info", "--format", "json", $"{Ceph.Pool}/{image}")).Check("rbd info").Stdout)!;
        Assert.Equal(32L << 20, info["size"]!.GetValue<long>());
        Assert.Equal(1L << 20, info["object_size"]!.GetValue<long>());

        await d.Qmp.ExecuteAsync("blockdev-add", Ceph.Node("r0", image));
        File.WriteAllBytes(dir["mnt"], []);
        await d.Qmp.ExecuteAsync("block-export-add", new JsonObject
        {
            ["type"] = "fuse", ["id"] = "f0", ["node-name"] = "r0", ["mountpoint"] = dir["mnt"], ["writable"] = true,
        });
        var data = RandomBytes(3 << 20);
        await using (var f = new FileStream(dir["mnt"], FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = 5 << 20;
            await f.WriteAsync(data);
        }

        await d.Qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "f0" });
        await File.WriteAllBytesAsync(dir["expect.raw"], data);
        await QemuIoAsync(Ceph.FileName(image), "raw", "read -P 0 0 5M");
        var r = await Tool.RunAsync("qemu-img", "compare", "-U", "--image-opts", $"driver=raw,offset={5 << 20},size={3 << 20},file.driver=rbd,file.pool={Ceph.Pool},file.image={image},file.conf={Ceph.Conf}", $"driver=raw,file.driver=file,file.filename={dir["expect.raw"]}");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);

        Assert.Equal("obj size needs to be power of 2", await d.BlockdevCreateAsync("c1", new JsonObject
        {
            ["driver"] = "rbd", ["location"] = Ceph.Options(Ceph.NewImage("bad")), ["size"] = 1 << 20, ["cluster-size"] = 3 << 20,
        }));
    }

    /// <summary>A qcow2 overlay on local disk whose backing file is an rbd: name: our export reads the chain as qemu-img does, and the overlay stays clean.</summary>
    [Fact]
    public async Task Qcow2OverlayOverAnRbdBaseReadsAsQemuImgAndChecksClean()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("base");
        await QemuImgAsync("create", "-q", "-f", "raw", Ceph.FileName(image), "64M");
        await QemuIoAsync(Ceph.FileName(image), "raw", "write -P 0x21 0 8M", "write -P 0x22 60M 4M");
        var overlay = dir["top.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", Ceph.FileName(image), "-F", "raw", overlay);
        await QemuIoAsync(overlay, "qcow2", "write -P 0x31 4M 1M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("top", overlay);
        await d.ExportAsync("top");
        await QemuIoAsync(d.NbdUri("top"), "nbd", "write -P 0x41 62M 64k");
        await QemuIoAsync(d.NbdUri("top"), "nbd", "read -P 0x21 0 4M", "read -P 0x31 4M 1M", "read -P 0x21 5M 3M", "read -P 0 8M 52M", "read -P 0x41 62M 64k");
        await d.Qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "exp-top" });
        await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "top" });
        (await Tool.RunAsync("qemu-img", "check", "-f", "qcow2", overlay)).Check("qemu-img check");
        await QemuIoAsync(overlay, "qcow2", "read -P 0x22 60M 2M", "read -P 0x41 62M 64k", "read -P 0x22 63M 1M");
        await QemuIoAsync(Ceph.FileName(image), "raw", "read -P 0x22 62M 64k");
    }

    /// <summary>A local qcow2 mirrored into an rbd image while a client writes; once ready and cancelled, the two are equal.</summary>
    [Fact]
    public async Task MirrorIntoRbdWhileAClientWritesLeavesAnEqualCopy()
    {
        using var dir = new TempDir();
        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "64M");
        await QemuIoAsync(src, "qcow2", "write -P 0x11 0 4M", "write -P 0x22 20M 1M", "write -P 0x33 63M 1M");
        var image = Ceph.NewImage("mirror");
        await QemuImgAsync("create", "-q", "-f", "raw", Ceph.FileName(image), "64M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.ExportAsync("src");
        await d.Qmp.ExecuteAsync("blockdev-add", Ceph.Node("dst", image));
        var writer = QemuIoAsync(d.NbdUri("src"), "nbd", Enumerable.Range(0, 40).Select(i => $"write -P {i + 1} {i * 1536}k 512k").ToArray());
        await d.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject { ["job-id"] = "m0", ["device"] = "src", ["target"] = "dst", ["sync"] = "full" });
        await writer;
        await d.WaitJobEventAsync("BLOCK_JOB_READY", "m0");
        await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "m0" });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m0");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(20));
        await AssertSameAsync(src, Ceph.FileName(image), "qcow2", "raw");
        await QemuIoAsync(Ceph.FileName(image), "raw", "read -P 40 " + (39 * 1536) + "k 512k", "read -P 0x33 63M 1M");
    }

    /// <summary>A full backup into an rbd image equals the source as it was when the job started.</summary>
    [Fact]
    public async Task BackupIntoRbdEqualsTheSource()
    {
        using var dir = new TempDir();
        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "32M");
        await QemuIoAsync(src, "qcow2", "write -P 0x51 1M 3M", "write -P 0x52 30M 2M");
        var image = Ceph.NewImage("backup");
        await QemuImgAsync("create", "-q", "-f", "raw", Ceph.FileName(image), "32M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.Qmp.ExecuteAsync("blockdev-add", Ceph.Node("dst", image));
        await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject { ["job-id"] = "b0", ["device"] = "src", ["target"] = "dst", ["sync"] = "full" });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "b0");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(20));
        await AssertSameAsync(src, Ceph.FileName(image), "qcow2", "raw");
    }

    /// <summary>The key from a secret object is the one used: the admin key connects, another is refused as qemu-storage-daemon refuses it.</summary>
    [Fact]
    public async Task KeySecretIsTheKeyUsed()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("key");
        await Ceph.RbdAsync("create", "--size", "4M", $"{Ceph.Pool}/{image}");
        var wrongKey = Convert.ToBase64String(Convert.FromBase64String(Ceph.AdminKey()).Select(b => (byte)(b ^ 0x5a)).ToArray());
        var errors = new List<string>();
        foreach (var qsd in new[] { false, true })
        {
            await using var d = await StartAsync(dir, qsd ? "q" : "a", qsd);
            await d.Qmp.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "secret", ["id"] = "good", ["data"] = Ceph.AdminKey(), ["format"] = "base64" });
            await d.Qmp.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "secret", ["id"] = "bad", ["data"] = wrongKey, ["format"] = "base64" });
            var node = Ceph.Node("r0", image);
            node["user"] = "admin";
            node["key-secret"] = "good";
            node["auth-client-required"] = new JsonArray("cephx");
            await d.Qmp.ExecuteAsync("blockdev-add", node);
            node = Ceph.Node("r1", image);
            node["key-secret"] = "bad";
            var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", node);
            Assert.Equal("GenericError", cls);
            errors.Add(desc);
        }

        Assert.Equal(errors[1], errors[0]);
        Assert.StartsWith("error connecting: ", errors[0]);
    }

    /// <summary>Bad pools, images, namespaces, configuration files and snapshots fail with qemu-storage-daemon's words; the daemon stays up.</summary>
    [Fact]
    public async Task BadLocationsFailInQemusWords()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("loc");
        await Ceph.RbdAsync("create", "--size", "4M", $"{Ceph.Pool}/{image}");
        await Ceph.RbdAsync("snap", "create", $"{Ceph.Pool}/{image}@s1");
        JsonObject Node(Action<JsonObject> change)
        {
            var o = Ceph.Node("n", image);
            change(o);
            return o;
        }

        JsonObject[] cases =
        [
            Node(o => o["pool"] = "nopool"),
            Node(o => o["image"] = "noimage"),
            Node(o => o["namespace"] = "nons"),
            Node(o => o["conf"] = dir["missing.conf"]),
            Node(o => o["snapshot"] = "s1"),
            Node(o => o["snapshot"] = "nosnap"),
            Node(o => o.Remove("pool")),
        ];
        var ours = new List<string>();
        var theirs = new List<string>();
        foreach (var qsd in new[] { false, true })
        {
            await using var d = await StartAsync(dir, qsd ? "q" : "a", qsd);
            foreach (var c in cases)
            {
                var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", (JsonObject)c.DeepClone());
                Assert.Equal("GenericError", cls);
                (qsd ? theirs : ours).Add(desc);
            }

            // qemu-storage-daemon 7.2 names the list item 'null'; newer QEMU names it as we do.
            var (_, auth) = await d.Qmp.ErrorAsync("blockdev-add", Node(o => o["auth-client-required"] = new JsonArray("cephx", "kerberos")));
            Assert.Equal(qsd ? "Parameter 'null' does not accept value 'kerberos'" : "Parameter 'auth-client-required[1]' does not accept value 'kerberos'", auth);

            var snap = Node(o => o["snapshot"] = "s1");
            snap["read-only"] = true;
            await d.Qmp.ExecuteAsync("blockdev-add", snap);
        }

        Assert.Equal(theirs, ours);
        Assert.Equal("error opening pool nopool: No such file or directory", ours[0]);
        Assert.Equal("rbd snapshots are read-only", ours[4]);
    }

    /// <summary>
    /// export-server create makes raw and qcow2 images on rbd: names (the qcow2 checks clean),
    /// drive-backup creates its rbd: target and leaves an equal copy, and a dirty bitmap on the rbd
    /// node records the writes made through the export.
    /// </summary>
    [Fact]
    public async Task CreateCommandDriveBackupAndADirtyBitmapWorkOnRbd()
    {
        using var dir = new TempDir();
        var raw = Ceph.NewImage("craw");
        var qcow2 = Ceph.NewImage("cq");
        (await Tool.RunAsync(Daemon.ExportServerPath, "create", "-f", "raw", Ceph.FileName(raw), "24M")).Check("export-server create raw");
        (await Tool.RunAsync(Daemon.ExportServerPath, "create", "-f", "qcow2", Ceph.FileName(qcow2), "16M")).Check("export-server create qcow2");
        var info = JsonNode.Parse((await Tool.RunAsync("rbd", "-c", Ceph.Conf, "info", "--format", "json", $"{Ceph.Pool}/{raw}")).Check("rbd info").Stdout)!;
        Assert.Equal(24L << 20, info["size"]!.GetValue<long>());
        (await Tool.RunAsync("qemu-img", "check", "-f", "qcow2", Ceph.FileName(qcow2))).Check("qemu-img check");

        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "8M");
        await QemuIoAsync(src, "qcow2", "write -P 0x31 1M 2M");
        var backupTarget = Ceph.NewImage("db");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.Qmp.ExecuteAsync("drive-backup", new JsonObject
        {
            ["job-id"] = "b0", ["device"] = "src", ["target"] = Ceph.FileName(backupTarget), ["format"] = "raw", ["sync"] = "full", ["mode"] = "absolute-paths",
        });
        Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "b0"))["error"]);
        await AssertSameAsync(src, Ceph.FileName(backupTarget), "qcow2", "raw");

        await d.Qmp.ExecuteAsync("blockdev-add", Ceph.Node("r0", raw));
        await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = "r0", ["name"] = "b0", ["granularity"] = 65536 });
        await d.Qmp.ExecuteAsync("block-export-add", new JsonObject
        {
            ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "r0", ["name"] = "r0", ["writable"] = true, ["bitmaps"] = new JsonArray("b0"),
        });
        await QemuIoAsync(d.NbdUri("r0"), "nbd", "write -P 0x44 4M 64k", "write -P 0x45 20M 128k");
        var map = (await Tool.RunAsync("nbdinfo", "--map=qemu:dirty-bitmap:b0", d.NbdUri("r0"))).Check("nbdinfo --map").Stdout;
        Assert.Matches(@"^\s*0\s+4194304\s+0\s+clean\n\s*4194304\s+65536\s+1\s+dirty\n\s*4259840\s+16711680\s+0\s+clean\n\s*20971520\s+131072\s+1\s+dirty\n\s*21102592\s+4063232\s+0\s+clean\n$", map);
    }

    /// <summary>
    /// The cluster's OSD and monitor stopped while a client writes and reads through our export of
    /// an rbd image: its requests fail with EIO within the driver's request time-out instead of
    /// waiting for ever, the daemon serves another export meanwhile, and once the cluster is back
    /// the export serves again, with the data written before and after.
    /// </summary>
    [Fact]
    public async Task StoppedClusterFailsRequestsWithEioAndTheExportServesAgainWhenItReturns()
    {
        using var dir = new TempDir();
        var image = Ceph.NewImage("down");
        await using var d = await ClusterDaemons.StartWithTwoExportsAsync(dir, Ceph.FileName(image), Ceph.Node("r0", image));

        var load = LoadUntilFailureAsync(d.NbdUri("r0"));
        await Task.Delay(1000);
        Assert.False(load.IsCompleted);
        var clock = Stopwatch.StartNew();
        await Ceph.StopAsync();
        var stopped = clock.Elapsed;
        TimeSpan failed, readFailed;
        try
        {
            var reader = ReadFailsAfterAsync(d.NbdUri("r0"), clock);
            await QemuIoAsync(d.NbdUri("l0"), "nbd", "read -P 0x17 0 1M");
            Assert.Contains("Input/output error", await load);
            failed = clock.Elapsed;
            readFailed = await reader;
            // One of our requests may be two cluster requests in a row for librbd (an object map's
            // update, then the data), each bounded by the time-out.
            var limit = stopped + TimeSpan.FromSeconds((2 * RequestTimeoutSeconds) + 15);
            Assert.True(failed < limit, $"the load failed after {failed}, the cluster stopped after {stopped}");
            Assert.True(readFailed < limit, $"a read failed after {readFailed}, the cluster stopped after {stopped}");
            await QemuIoAsync(d.NbdUri("l0"), "nbd", "read -P 0x17 0 1M");
        }
        finally
        {
            await Ceph.StartAsync();
        }

        var back = await ClusterDaemons.ServesAgainAsync(d, "r0", Ceph.FileName(image), TimeSpan.FromSeconds(90));
        Console.WriteLine($"rbd: stopped in {stopped.TotalSeconds:F1} s, a read failed {(readFailed - stopped).TotalSeconds:F1} s later and the load {(failed - stopped).TotalSeconds:F1} s later, served again {back.TotalSeconds:F1} s after the restart");
    }

    /// <summary>
    /// A client writing, flushing and reading back through <paramref name="uri"/>, one request a
    /// run, until a request fails; returns that run's output, so the first failure ends it.
    /// </summary>
    private static async Task<string> LoadUntilFailureAsync(string uri)
    {
        while (true)
        {
            foreach (var command in new[] { "write -P 0x55 40M 1M", "flush", "read -P 0x55 40M 1M" })
            {
                var output = await QemuIoMayFailAsync(uri, command);
                if (output.Contains("failed", StringComparison.Ordinal))
                {
                    return output;
                }
            }
        }
    }

    /// <summary>A read of data the image holds, which must fail with EIO; returns when it failed on <paramref name="clock"/>.</summary>
    private static async Task<TimeSpan> ReadFailsAfterAsync(string uri, Stopwatch clock)
    {
        Assert.Contains("read failed: Input/output error", await QemuIoMayFailAsync(uri, "read -P 0x42 16M 1M"));
        return clock.Elapsed;
    }

    private static async Task<string> QemuIoMayFailAsync(string uri, params string[] commands)
    {
        var r = await Tool.RunAsync("qemu-io", ["-f", "raw", .. commands.SelectMany(c => new[] { "-c", c }), uri], TimeSpan.FromSeconds(4 * RequestTimeoutSeconds));
        return r.Stdout + r.Stderr;
    }

    /// <summary>
    /// QEMU's rbd driver has no preallocation: blockdev-create refuses the member in
    /// qemu-storage-daemon's words, create refuses the option, and no image is made.
    /// </summary>
    [Fact]
    public async Task PreallocationIsRefusedAsInQemu()
    {
        using var dir = new TempDir();
        var errors = new List<string>();
        var names = new List<string>();
        foreach (var qsd in new[] { false, true })
        {
            await using var d = await StartAsync(dir, qsd ? "q" : "a", qsd);
            foreach (var mode in new[] { "off", "full" })
            {
                names.Add(Ceph.NewImage("pre"));
                var options = new JsonObject
                {
                    ["driver"] = "rbd", ["location"] = Ceph.Options(names[^1]), ["size"] = 8 << 20, ["preallocation"] = mode,
                };
                if (qsd)
                {
                    var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-create", new JsonObject { ["job-id"] = "c0", ["options"] = options });
                    Assert.Equal("GenericError", cls);
                    errors.Add(desc);
                }
                else
                {
                    // The member is refused when the job runs, not before it starts (as for every driver here).
                    errors.Add(await d.BlockdevCreateAsync("c0", options) ?? "created");
                }
            }
        }

        Assert.Equal(errors[2..], errors[..2]);
        var made = (await Tool.RunAsync("rbd", "-c", Ceph.Conf, "ls", Ceph.Pool)).Check("rbd ls").Stdout.Split('\n');
        Assert.Empty(names.Intersect(made));
        Assert.Equal("Parameter 'options.preallocation' is unexpected", errors[0]);

        var image = Ceph.NewImage("preimg");
        var theirs = await Tool.RunAsync("qemu-img", "create", "-f", "raw", "-o", "preallocation=full", Ceph.FileName(image), "8M");
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, "create", "-f", "raw", "-o", "preallocation=full", Ceph.FileName(image), "8M");
        Assert.NotEqual(0, theirs.ExitCode);
        Assert.NotEqual(0, ours.ExitCode);
        Assert.EndsWith("Invalid parameter 'preallocation'", theirs.Stderr.Trim());
        // qemu-img refuses the option while it parses it (raw's and rbd's options together); ours
        // passes it to the rbd driver, which refuses it as blockdev-create does.
        Assert.EndsWith("Parameter 'options.preallocation' is unexpected", ours.Stderr.Trim());
        Assert.DoesNotContain(image, (await Tool.RunAsync("rbd", "-c", Ceph.Conf, "ls", Ceph.Pool)).Check("rbd ls").Stdout.Split('\n'));
    }
}
