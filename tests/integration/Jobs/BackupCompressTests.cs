using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;
using static ExportServer.IntegrationTests.Qcow2.CompressedImages;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>Backup with compress=true: the target's clusters are compressed, and the image is clean and equal to the source.</summary>
public sealed class BackupCompressTests
{
    /// <summary>A 16 MiB source: 6 MiB of text, 2 MiB of noise at 8 MiB, the rest unallocated.</summary>
    private static async Task<string> SourceAsync(TempDir dir)
    {
        var raw = WriteRaw(dir["data.raw"], 6 << 20, 2 << 20);
        var src = dir["src.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", src, "16M");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -s " + raw + " 0 6M", src)).Check("qemu-io write text");
        (await Tool.ShAsync($"dd if={raw} of={dir["noise.raw"]} bs=1M skip=6 count=2 status=none")).Check("dd");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -s " + dir["noise.raw"] + " 8M 2M", src)).Check("qemu-io write noise");
        return src;
    }

    /// <summary>With <paramref name="qsd"/> the same backup runs on qemu-storage-daemon: the expectations are QEMU's.</summary>
    [Theory]
    [InlineData("zlib", 65536, false)]
    [InlineData("zstd", 65536, false)]
    [InlineData("zlib", 262144, false)]
    [InlineData("zstd", 262144, true)]
    public async Task BlockdevBackupWritesCompressedClusters(string type, int clusterSize, bool qsd)
    {
        using var dir = new TempDir();
        var src = await SourceAsync(dir);
        var target = dir["t.qcow2"];
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-o", $"compression_type={type},cluster_size={clusterSize}", target, "16M");
        await using var d = await StartAsync(dir, "a", qsd);
        await d.AddImageAsync("src", src);
        await d.AddImageAsync("t", target);
        await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
        {
            ["job-id"] = "bk", ["device"] = "src", ["target"] = "t", ["sync"] = "full", ["compress"] = true,
        });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "bk");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));

        // Text clusters compressed, noise clusters stored plainly, zero ranges left unallocated.
        await AssertCheckCleanAsync(target, 75.0);
        await AssertSameAsync(src, target);
        Assert.True(new FileInfo(target).Length < new FileInfo(src).Length - (4L << 20), $"{new FileInfo(target).Length} vs {new FileInfo(src).Length}");
    }

    [Fact]
    public async Task DriveBackupCompressesIntoANewImage()
    {
        using var dir = new TempDir();
        var src = await SourceAsync(dir);
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("src", src);
        await d.Qmp.ExecuteAsync("drive-backup", new JsonObject
        {
            ["job-id"] = "bk", ["device"] = "src", ["target"] = dir["bk.qcow2"], ["format"] = "qcow2", ["sync"] = "full", ["compress"] = true,
        });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "bk");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertCheckCleanAsync(dir["bk.qcow2"], 75.0);
        await AssertSameAsync(src, dir["bk.qcow2"]);
    }

    [Fact]
    public async Task CompressToARawTargetIsRefusedAsQemuDoes()
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["s.qcow2"], "1M");
        await QemuImgAsync("create", "-q", "-f", "raw", dir["t.raw"], "1M");
        await using var d = await StartAsync(dir, "a");
        await d.AddImageAsync("s", dir["s.qcow2"]);
        await d.AddImageAsync("t", dir["t.raw"], "raw");
        var args = new JsonObject { ["job-id"] = "bk", ["device"] = "s", ["target"] = "t", ["sync"] = "full", ["compress"] = true };
        Assert.Equal(("GenericError", "Compression is not supported for this drive "), await d.Qmp.ErrorAsync("blockdev-backup", args));
        Assert.Empty((JsonArray)await d.Qmp.ExecuteAsync("query-block-jobs"));
    }
}
