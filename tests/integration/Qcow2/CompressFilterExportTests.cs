using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Qcow2.CompressedImages;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// A compress filter over a qcow2 image, exported over NBD and filled by nbdcopy: qemu-img finds the
/// image clean, equal to the source, compressed where the data shrinks, and smaller than a plain copy.
/// </summary>
public sealed class CompressFilterExportTests
{
    /// <summary>With <paramref name="qsd"/> qemu-storage-daemon serves the same graph: the expectations are QEMU's.</summary>
    [Theory]
    [InlineData("zlib", false)]
    [InlineData("zstd", false)]
    [InlineData("zlib", true)]
    public async Task NbdWritesThroughTheFilterStoreCompressedClusters(string type, bool qsd)
    {
        using var dir = new TempDir();
        var raw = WriteRaw(dir["src.raw"], 6 << 20, 2 << 20);
        var img = dir["c.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"compression_type={type}", img, "8M")).Check("qemu-img create");
        string[] args =
        [
            "--blockdev", $"driver=file,node-name=f0,filename={img}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--blockdev", "driver=compress,node-name=c0,file=q0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=c0,name=disk,writable=on",
        ];
        await using (var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args))
        {
            (await Tool.RunAsync("/usr/bin/nbdcopy", raw, $"nbd+unix:///disk?socket={dir["nbd.sock"]}")).Check("nbdcopy");
            Assert.Equal(0, await d.StopAsync());
        }

        // Six of eight MiB are text, the last two noise that is stored as normal clusters.
        await AssertCheckCleanAsync(img, 75.0);
        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", raw, img)).Check("qemu-img compare");
        var plain = dir["plain.qcow2"];
        (await Tool.RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, plain)).Check("qemu-img convert");
        Assert.True(new FileInfo(img).Length < new FileInfo(plain).Length - (5L << 20), $"{new FileInfo(img).Length} vs {new FileInfo(plain).Length}");
    }

    [Fact]
    public async Task FilterOverANodeWithoutCompressionIsRefused()
    {
        using var dir = new TempDir();
        var img = dir["r.raw"];
        File.WriteAllBytes(img, new byte[1 << 20]);
        var r = await Tool.RunAsync(Daemon.ExportServerPath, [
            "--blockdev", $"driver=file,node-name=f0,filename={img}",
            "--blockdev", "driver=compress,node-name=c0,file=f0",
        ], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--blockdev driver=compress,node-name=c0,file=f0: Compression is not supported for underlying format: file", r.Stderr);
    }
}
