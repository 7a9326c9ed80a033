using System.Diagnostics;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Distributed;

/// <summary>
/// The gluster driver against the real volume scripts/test starts: qemu-img with its own gluster
/// driver and our export see the same bytes, a job writes into a gluster file, errors are QEMU's.
/// Every libgfapi client takes seconds to leave the volume, so the tests are few and do much each.
/// </summary>
public sealed class GlusterTests
{
    /// <summary>
    /// A file qemu-img writes reads equal through our NBD export with the same allocation map; our
    /// writes, zeroes and discards read back through qemu-img; a qcow2 overlay whose backing file is
    /// a gluster:// name reads through; a mirror into a gluster file leaves an equal copy.
    /// </summary>
    [Fact]
    public async Task QemuImgAndOurExportSeeTheSameBytesAndAMirrorIntoGlusterIsEqual()
    {
        using var dir = new TempDir();
        var file = Gluster.NewFile("conv");
        var local = dir["data.raw"];
        var data = new byte[3 << 20];
        Random.Shared.NextBytes(data);
        await File.WriteAllBytesAsync(local, data);
        await QemuImgAsync("create", "-q", "-f", "raw", Gluster.Uri(file), "32M");
        await QemuImgAsync("convert", "-n", "-f", "raw", "-O", "raw", local, Gluster.Uri(file));

        var overlay = dir["top.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", Gluster.Uri(file), "-F", "raw", overlay);
        var mirrorTarget = Gluster.NewFile("mirror");
        await QemuImgAsync("create", "-q", "-f", "raw", Gluster.Uri(mirrorTarget), "32M");

        await using (var d = await StartAsync(dir, "a"))
        {
            await d.Qmp.ExecuteAsync("blockdev-add", Gluster.Node("g0", file));
            await d.ExportAsync("g0");
            await AssertSameAsync(local, $"json:{{\"driver\":\"raw\",\"size\":{3 << 20},\"file\":{{\"driver\":\"nbd\",\"server\":{{\"type\":\"unix\",\"path\":\"{d.NbdSocket}\"}},\"export\":\"g0\"}}}}", "raw", "raw");
            var map = (await Tool.RunAsync("nbdinfo", "--map", d.NbdUri("g0"))).Check("nbdinfo --map").Stdout;
            Assert.Matches(@"^\s*0\s+3145728\s+0\s+data\n\s*3145728\s+30408704\s+3\s+hole,zero\n$", map);
            await QemuIoAsync(d.NbdUri("g0"), "nbd", "write -P 0x5c 20M 1M", "write -z 1M 512k", "discard 2M 1M", "flush");

            await d.AddImageAsync("top", overlay);
            await d.ExportAsync("top");
            await QemuIoAsync(d.NbdUri("top"), "nbd", "read -P 0x5c 20M 1M", "read -P 0 1M 512k");
            await AssertSameAsync(d.NbdUri("top"), d.NbdUri("g0"), "raw", "raw");

            await d.Qmp.ExecuteAsync("blockdev-add", Gluster.Node("dst", mirrorTarget));
            await d.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject { ["job-id"] = "m0", ["device"] = "top", ["target"] = "dst", ["sync"] = "full" });
            await d.WaitJobEventAsync("BLOCK_JOB_READY", "m0");
            await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "m0" });
            Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m0"))["error"]);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        }

        await QemuIoAsync(Gluster.Uri(file), "raw", "read -P 0x5c 20M 1M", "read -P 0 1M 512k", "read -P 0 2M 1M");
        await AssertSameAsync(Gluster.Uri(file), Gluster.Uri(mirrorTarget), "raw", "raw");
    }

    /// <summary>
    /// Reads and writes above 128 KiB go to libgfapi whole, two at a time: a 128 MiB copy in nbdcopy's
    /// 256 KiB writes and back makes the daemon map none of libgfapi's 2 MiB regions of 256 KiB buffers
    /// (with every write in flight it mapped one every few MiB); writes of 300 KiB at an odd offset and of
    /// 1 MiB read back through qemu-img's own gluster driver, with the copy; and a 1 MiB read across
    /// the end of a file cut short on the brick, behind the daemon's back, gives the data before and
    /// zeroes after.
    /// </summary>
    [Fact]
    public async Task LargeRequestsReadBackEqualAndMapNoBuffersAfresh()
    {
        using var dir = new TempDir();
        var file = Gluster.NewFile("piece");
        var local = dir["data.raw"];
        var data = new byte[128 << 20];
        Random.Shared.NextBytes(data);
        await File.WriteAllBytesAsync(local, data);
        await QemuImgAsync("create", "-q", "-f", "raw", Gluster.Uri(file), "128M");

        await using var d = await StartAsync(dir, "a");
        await d.Qmp.ExecuteAsync("blockdev-add", Gluster.Node("g0", file));
        await d.Qmp.ExecuteAsync("block-export-add", new JsonObject
        {
            ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "g0", ["name"] = "g0", ["writable"] = true,
        });

        var strace = await Strace.AttachAsync(d.Process.Pid, "mmap", dir["trace"], arguments: true);
        (await Tool.RunAsync("nbdcopy", local, d.NbdUri("g0"))).Check("nbdcopy");
        (await Tool.RunAsync("nbdcopy", d.NbdUri("g0"), dir["back.raw"])).Check("nbdcopy back");
        var maps = (await strace.StopAsync()).Count(l => l.Contains("mmap(NULL, 2097152, PROT_READ|PROT_WRITE", StringComparison.Ordinal));
        Assert.True(maps == 0, $"{maps} regions of 2 MiB mapped during the copies");
        var back = await File.ReadAllBytesAsync(dir["back.raw"]);
        Assert.True(data.AsSpan().SequenceEqual(back), "the copy back differs");

        await QemuIoAsync(d.NbdUri("g0"), "nbd", "write -P 0x3c 1000k 300k", "write -P 0x4d 5M 1M", "write -P 0x5e 127M 1M", "flush");
        data.AsSpan(1000 << 10, 300 << 10).Fill(0x3c);
        data.AsSpan(5 << 20, 1 << 20).Fill(0x4d);
        data.AsSpan(127 << 20, 1 << 20).Fill(0x5e);
        var copy = dir["copy.raw"];
        await QemuImgAsync("convert", "-f", "raw", "-O", "raw", Gluster.Uri(file), copy);
        var read = await File.ReadAllBytesAsync(copy);
        Assert.True(data.AsSpan().SequenceEqual(read), "qemu-img reads other bytes than were written");

        // One read of 1 MiB over a file that now ends 300 KiB into it, cut short on the brick.
        using (var brickFile = File.OpenHandle(Path.Combine(Gluster.Dir, "brick", file), FileMode.Open, FileAccess.Write))
        {
            RandomAccess.SetLength(brickFile, (127L << 20) + (300 << 10));
        }

        (await Tool.RunAsync("/usr/bin/nbdsh", "-u", d.NbdUri("g0"), "-c",
            "b = h.pread(1 << 20, 127 << 20)\n" +
            "assert b[:300 << 10] == b'\\x5e' * (300 << 10), 'data before the end'\n" +
            "assert b[300 << 10:] == bytes(724 << 10), 'zeroes after the end'")).Check("nbdsh read across the end");
    }

    /// <summary>A volume that does not exist and a file that does not exist fail as in qemu-storage-daemon; the daemon stays up.</summary>
    [Fact]
    public async Task BadVolumeAndMissingFileFailInQemusWords()
    {
        using var dir = new TempDir();
        var results = new List<string>();
        foreach (var qsd in new[] { false, true })
        {
            await using var d = await StartAsync(dir, qsd ? "q" : "a", qsd);
            var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", Gluster.Node("n0", "a.img", volume: "novolume"));
            Assert.Equal("GenericError", cls);
            results.Add(desc);
            await d.Qmp.ExecuteAsync("query-named-block-nodes");
        }

        Assert.Equal(results[1], results[0]);
        Assert.Equal("Gluster connection for volume novolume, path a.img failed to connect", results[0]);
    }

    /// <summary>
    /// glusterd and the brick stopped while a client writes and reads through our export: its
    /// requests fail with EIO, the daemon serves another export meanwhile, and once the volume is
    /// back the export serves again, with the data written before and after.
    /// </summary>
    [Fact]
    public async Task StoppedVolumeFailsRequestsWithEioAndTheExportServesAgainWhenItReturns()
    {
        using var dir = new TempDir();
        var file = Gluster.NewFile("down");
        await using var d = await ClusterDaemons.StartWithTwoExportsAsync(dir, Gluster.Uri(file), Gluster.Node("g0", file));

        var load = ClusterDaemons.LoadUntilFailureAsync(d.NbdUri("g0"), "40M");
        await Task.Delay(1000);
        Assert.False(load.IsCompleted);
        var clock = Stopwatch.StartNew();
        await Gluster.StopAsync();
        var stopped = clock.Elapsed;
        TimeSpan failed;
        try
        {
            var loadOutput = await load;
            Assert.Contains("Input/output error", loadOutput);
            Assert.Contains("read failed: Input/output error", await ClusterDaemons.QemuIoAsync(d.NbdUri("g0"), "read -P 0x42 16M 1M"));
            failed = clock.Elapsed;
            Assert.True(failed < stopped + TimeSpan.FromSeconds(20), $"requests failed after {failed}, the volume stopped after {stopped}");
            await QemuIoAsync(d.NbdUri("l0"), "nbd", "read -P 0x17 0 1M");
        }
        finally
        {
            await Gluster.StartAsync();
        }

        var back = await ClusterDaemons.ServesAgainAsync(d, "g0", Gluster.Uri(file), TimeSpan.FromSeconds(40));
        Console.WriteLine($"gluster: stopped in {stopped.TotalSeconds:F1} s, requests failed {(failed - stopped).TotalSeconds:F1} s later, served again {back.TotalSeconds:F1} s after the restart");
    }

    /// <summary>
    /// blockdev-create makes gluster files with each preallocation mode (and refuses others in
    /// QEMU's words), export-server create makes a qcow2 on a gluster:// name that qemu-img checks
    /// clean, and drive-mirror creates its gluster:// target and leaves an equal copy.
    /// </summary>
    [Fact]
    public async Task BlockdevCreateCreateCommandAndDriveMirrorMakeGlusterFiles()
    {
        using var dir = new TempDir();
        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "8M");
        await QemuIoAsync(src, "qcow2", "write -P 0x31 1M 2M");
        var qcow2 = Gluster.NewFile("cq");
        (await Tool.RunAsync(Daemon.ExportServerPath, "create", "-f", "qcow2", Gluster.Uri(qcow2), "16M")).Check("export-server create");
        (await Tool.RunAsync("qemu-img", "check", "-f", "qcow2", Gluster.Uri(qcow2))).Check("qemu-img check");
        var info = JsonNode.Parse((await Tool.RunAsync("qemu-img", "info", "--output=json", Gluster.Uri(qcow2))).Check("qemu-img info").Stdout)!;
        Assert.Equal("qcow2", info["format"]!.GetValue<string>());
        Assert.Equal(16L << 20, info["virtual-size"]!.GetValue<long>());

        var mirrorTarget = Gluster.NewFile("dm");
        await using (var d = await StartAsync(dir, "a"))
        {
            foreach (var prealloc in new[] { "off", "falloc", "full" })
            {
                var file = Gluster.NewFile("c" + prealloc);
                var location = Gluster.Node("x", file);
                location.Remove("driver");
                location.Remove("node-name");
                Assert.Null(await d.BlockdevCreateAsync("c-" + prealloc, new JsonObject
                {
                    ["driver"] = "gluster", ["location"] = location, ["size"] = 5 << 20, ["preallocation"] = prealloc,
                }));
                var made = JsonNode.Parse((await Tool.RunAsync("qemu-img", "info", "--output=json", "-f", "raw", Gluster.Uri(file))).Check("qemu-img info").Stdout)!;
                Assert.Equal(5L << 20, made["virtual-size"]!.GetValue<long>());
                var allocated = made["actual-size"]!.GetValue<long>();
                Assert.True(prealloc == "off" ? allocated < (1 << 20) : allocated >= 5L << 20, $"{prealloc}: {allocated} bytes allocated");
            }

            var bad = Gluster.Node("x", Gluster.NewFile("cbad"));
            bad.Remove("driver");
            bad.Remove("node-name");
            Assert.Equal("Unsupported preallocation mode: metadata", await d.BlockdevCreateAsync("c-bad", new JsonObject
            {
                ["driver"] = "gluster", ["location"] = bad, ["size"] = 1 << 20, ["preallocation"] = "metadata",
            }));

            await d.AddImageAsync("src", src);
            await d.Qmp.ExecuteAsync("drive-mirror", new JsonObject
            {
                ["job-id"] = "m0", ["device"] = "src", ["target"] = Gluster.Uri(mirrorTarget), ["format"] = "raw", ["sync"] = "full", ["mode"] = "absolute-paths",
            });
            await d.WaitJobEventAsync("BLOCK_JOB_READY", "m0");
            await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "m0" });
            Assert.Null((await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "m0"))["error"]);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        }

        await AssertSameAsync(src, Gluster.Uri(mirrorTarget), "qcow2", "raw");
    }
}
