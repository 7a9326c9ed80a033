using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Bitmaps;

/// <summary>
/// Persistent bitmaps across sessions of the real daemon: qemu-img's bitmaps survive being served
/// writable and record what was written; qemu-storage-daemon reads back the bitmap we stored
/// (through its own qemu:dirty-bitmap export); a kill -9 leaves them in use, which both daemons
/// then report as inconsistent (and refuse to resize the image with).
/// </summary>
public sealed class BitmapPersistenceTests
{
    private static async Task<JsonNode> InfoAsync(string image)
    {
        var r = await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", image);
        return JsonNode.Parse(r.Check("qemu-img info").Stdout)!;
    }

    private static async Task CheckCleanAsync(string image)
    {
        var r = await Tool.RunAsync("qemu-img", "check", image);
        Assert.True(r.ExitCode == 0 && r.Stdout.Contains("No errors were found") && !r.Stdout.Contains("leaked"), r.Stdout + r.Stderr);
    }

    /// <summary>The bitmap's map as qemu-storage-daemon exports it from the image, opened read-only.</summary>
    private static async Task<string> OracleMapAsync(TempDir dir, string image, string bitmap)
    {
        var sock = dir["oracle.sock"];
        await using var d = await Daemon.StartQsdAsync(dir,
            "--blockdev", $"driver=file,node-name=proto,filename={image},read-only=on",
            "--blockdev", "driver=qcow2,node-name=fmt,file=proto,read-only=on",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", $"type=nbd,id=e0,node-name=fmt,name=disk,bitmaps.0={bitmap}");
        return await BitmapDaemon.MapAsync($"nbd+unix:///disk?socket={sock}", $"qemu:dirty-bitmap:{bitmap}");
    }

    [Fact]
    public async Task QemuImgBitmapsSurviveAWritableSessionAndRecordItsWrites()
    {
        using var dir = new TempDir();
        var image = dir["a.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "64M")).Check("create");
        (await Tool.RunAsync("qemu-img", "bitmap", "--add", image, "b0")).Check("bitmap add");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", image)).Check("write");

        await using (var d = await BitmapDaemon.StartAsync(dir, false, image))
        {
            var bitmaps = (await d.BitmapsAsync())!.ToJsonString();
            Assert.Equal("""[{"name":"b0","recording":true,"persistent":true,"busy":false,"granularity":65536,"count":65536}]""", bitmaps);
            await d.WriteAsync("write 1M 4k", "write -z 10M 128k");
            Assert.Equal(0, await d.StopAsync());
        }

        var info = await InfoAsync(image);
        var stored = info["format-specific"]!["data"]!["bitmaps"]!.AsArray();
        Assert.Single(stored);
        Assert.Equal("b0", stored[0]!["name"]!.GetValue<string>());
        Assert.Equal("""["auto"]""", stored[0]!["flags"]!.ToJsonString());
        await CheckCleanAsync(image);

        // QEMU reads what we stored: the granules of qemu-io's write and of ours.
        Assert.Equal(
            "0 65536 1\n65536 983040 0\n1048576 65536 1\n1114112 9371648 0\n10485760 131072 1\n10616832 56492032 0",
            await OracleMapAsync(dir, image, "b0"));
    }

    [Fact]
    public async Task KilledWhileServingTheBitmapIsInconsistentAfterwardsAsInQemu()
    {
        using var dir = new TempDir();
        var replies = new List<string>();
        foreach (var qsd in new[] { true, false })
        {
            var image = dir[qsd ? "qsd.qcow2" : "es.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
            (await Tool.RunAsync("qemu-img", "bitmap", "--add", image, "b0")).Check("bitmap add");
            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write 0 64k", image)).Check("write");
            await using (var d = await BitmapDaemon.StartAsync(dir, qsd, image))
            {
                await d.WriteAsync("write 1M 4k");
                d.Process.Signal(9);
                await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            }

            var flags = (await InfoAsync(image))["format-specific"]!["data"]!["bitmaps"]![0]!["flags"]!.ToJsonString();
            Assert.Equal("""["in-use","auto"]""", flags);
            await using (var d = await BitmapDaemon.StartAsync(dir, qsd, image))
            {
                replies.Add((await d.BitmapsAsync())!.ToJsonString());
                replies.Add((await d.StoredBitmapsAsync())!.ToJsonString());
                replies.Add(await d.ReplyAsync("block-dirty-bitmap-clear", new JsonObject { ["node"] = "fmt", ["name"] = "b0" }));
                replies.Add(await d.ReplyAsync("block-dirty-bitmap-enable", new JsonObject { ["node"] = "fmt", ["name"] = "b0" }));
                replies.Add(await d.ReplyAsync("x-debug-block-dirty-bitmap-sha256", new JsonObject { ["node"] = "fmt", ["name"] = "b0" }));

                // Without the export, whose root keeps QEMU from resizing the node at all.
                replies.Add(await d.ReplyAsync("block-export-del", new JsonObject { ["id"] = "e0" }));
                await Task.Delay(300);
                replies.Add(await d.ReplyAsync("block_resize", new JsonObject { ["node-name"] = "fmt", ["size"] = 32 << 20 }));
                replies.Add(await d.ReplyAsync("block-dirty-bitmap-remove", new JsonObject { ["node"] = "fmt", ["name"] = "b0" }));
                replies.Add((await d.BitmapsAsync())?.ToJsonString() ?? "none");
                replies.Add((await d.StoredBitmapsAsync())?.ToJsonString() ?? "none");
                Assert.Equal(0, await d.StopAsync());
            }

            Assert.Null((await InfoAsync(image))["format-specific"]!["data"]!["bitmaps"]);
            await CheckCleanAsync(image);
        }

        Assert.Equal(replies.Take(10), replies.Skip(10));
        Assert.Equal("""{"error":{"class":"GenericError","desc":"Bitmap \u0027b0\u0027 is inconsistent and cannot be used"}}""", replies[6]);
        Assert.Equal("""[{"flags":["in-use","auto"],"name":"b0","granularity":65536}]""", replies[1]);
        Assert.Contains("\"inconsistent\":true", replies[0]);
    }

    [Fact]
    public async Task APersistentBitmapAddedOverQmpIsStoredAndLoadedAgain()
    {
        using var dir = new TempDir();
        var image = dir["a.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", image, "32M")).Check("create");
        await using (var d = await BitmapDaemon.StartAsync(dir, false, image))
        {
            await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = "fmt", ["name"] = "p", ["persistent"] = true });
            await d.Qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = "fmt", ["name"] = "gone" });
            await d.WriteAsync("write 4k 4k", "write 20M 10k");
            Assert.Equal(0, await d.StopAsync());
        }

        await CheckCleanAsync(image);
        Assert.Equal("0 4096 0\n4096 4096 1\n8192 20963328 0\n20971520 12288 1\n20983808 12570624 0", await OracleMapAsync(dir, image, "p"));
        await using (var d = await BitmapDaemon.StartAsync(dir, false, image))
        {
            Assert.Equal("""[{"name":"p","recording":true,"persistent":true,"busy":false,"granularity":4096,"count":16384}]""",
                (await d.BitmapsAsync())!.ToJsonString());
        }
    }
    [Fact]
    public async Task BitmapsThatCannotBeStoredAtCloseAreReportedAsInQemu()
    {
        // The image is reached through qemu-nbd, which goes away before the daemon stops: storing the
        // persistent bitmap fails, the daemon says so in QEMU's words and still exits 0.
        using var dir = new TempDir();
        foreach (var qsd in new[] { true, false })
        {
            var image = dir[qsd ? "qsd.qcow2" : "es.qcow2"];
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
            var nbdSock = dir["q.sock"];
            var server = Daemon.Launch("qemu-nbd", ["-f", "raw", "--persistent", "-k", nbdSock, image]);
            for (var i = 0; i < 100 && !File.Exists(nbdSock); i++)
            {
                await Task.Delay(50);
            }

            var monitor = dir["m.sock"];
            string[] args =
            [
                "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
                "--blockdev", $"driver=nbd,node-name=proto,server.type=unix,server.path={nbdSock}",
                "--blockdev", "driver=qcow2,node-name=fmt,file=proto",
            ];
            await using var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args);
            await using (var qmp = await Qmp.QmpClient.ConnectAsync(monitor))
            {
                await qmp.ExecuteAsync("block-dirty-bitmap-add", (JsonObject)JsonNode.Parse("""{"node":"fmt","name":"p","persistent":true}""")!);
            }

            await server.StopAsync();
            await server.DisposeAsync();
            Assert.Equal(0, await d.StopAsync());
            var program = qsd ? "qemu-storage-daemon" : Path.GetFileName(Daemon.ExportServerPath);
            Assert.Contains($"{program}: Lost persistent bitmaps during inactivation of node 'fmt': ", d.Stderr, StringComparison.Ordinal);
            File.Delete(nbdSock);
            File.Delete(monitor);
        }
    }
}
