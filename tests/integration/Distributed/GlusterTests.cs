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
}
