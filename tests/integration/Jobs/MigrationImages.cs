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
}
