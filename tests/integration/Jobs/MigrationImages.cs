using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// The images of a migration test: the source src.qcow2 (32 MiB) over base.qcow2, and the empty
/// destination dst.qcow2; for sync=top the destination already has a copy of the base below it
/// (dbase.qcow2) and gets only the top layer.
/// </summary>
internal static class MigrationImages
{
    public static async Task<(string Source, string Destination)> CreateAsync(TempDir dir, string sync, int topMiB = 2)
    {
        var (baseImage, src, dst) = (dir["base.qcow2"], dir["src.qcow2"], dir["dst.qcow2"]);
        await QemuImgAsync("create", "-q", "-f", "qcow2", baseImage, "32M");
        await QemuIoAsync(baseImage, "qcow2", "write -P 0x0b 0 8M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", baseImage, "-F", "qcow2", src);
        await QemuIoAsync(src, "qcow2", $"write -P 0x5a 4M {topMiB}M", "write -P 0x5b 31M 1M");
        if (sync == "top")
        {
            File.Copy(baseImage, dir["dbase.qcow2"]);
            await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", dir["dbase.qcow2"], "-F", "qcow2", dst);
        }
        else
        {
            await QemuImgAsync("create", "-q", "-f", "qcow2", dst, "32M");
        }

        return (src, dst);
    }

    /// <summary>
    /// Mirrors A's node "disk" into its node "remote" while a client writes to A's export of it, writes
    /// 0x66 at 12M once the job is ready, and cancels it (which completes a ready mirror).
    /// </summary>
    public static async Task MirrorWhileWritingAsync(JobDaemon a, string sync)
    {
        var writer = QemuIoAsync(a.NbdUri("disk"), "nbd", Enumerable.Range(0, 24).Select(i => $"write -P {i + 0x40} {i * 1280}k 256k").ToArray());
        await a.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject
        {
            ["job-id"] = "mig", ["device"] = "disk", ["target"] = "remote", ["sync"] = sync, ["speed"] = 64L << 20,
        });
        await writer;
        await a.WaitJobEventAsync("BLOCK_JOB_READY", "mig");
        await QemuIoAsync(a.NbdUri("disk"), "nbd", "write -P 0x66 12M 100k");
        await a.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "mig" });
        var done = await a.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "mig");
        Xunit.Assert.Null(done["error"]);
    }
}
