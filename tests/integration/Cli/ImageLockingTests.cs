using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Cli;

/// <summary>Our image locks and QEMU's exclude each other both ways, as two QEMU processes would.</summary>
public sealed class ImageLockingTests
{
    private static string[] Writer(string image) =>
    [
        "--blockdev", $"driver=file,node-name=f0,filename={image}",
        "--blockdev", "driver=raw,node-name=r0,file=f0",
    ];

    [Fact]
    public async Task QemuCannotOpenWhatWeWrite()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        await using var ours = await Daemon.StartAsync(dir, Writer(image));

        var writer = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write 0 512", image);
        Assert.NotEqual(0, writer.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", writer.Stderr);
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-r", "-U", "-c", "read 0 512", image)).Check("read with -U");

        var qsd = await Tool.RunAsync("/usr/bin/qemu-storage-daemon",
        [
            .. Writer(image),
            "--nbd-server", $"addr.type=unix,addr.path={dir["q.sock"]}",
            "--export", "type=nbd,id=e0,node-name=r0,writable=on",
        ], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, qsd.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", qsd.Stderr);
    }

    [Fact]
    public async Task WeCannotOpenWhatQemuWrites()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        // QEMU takes its locks for the users of a node: a writable export makes it a writer.
        await using var qsd = await Daemon.StartQsdAsync(dir,
        [
            .. Writer(image),
            "--nbd-server", $"addr.type=unix,addr.path={dir["q.sock"]}",
            "--export", "type=nbd,id=e0,node-name=r0,writable=on",
        ]);

        var ours = await Tool.RunAsync(Daemon.ExportServerPath, Writer(image), TimeSpan.FromSeconds(30));
        Assert.Equal(1, ours.ExitCode);
        Assert.Contains("lock", ours.Stderr);
        Assert.Contains($"Is another process using the image [{image}]?", ours.Stderr);

        // Read-only with force-share is allowed next to a writer, as with qemu-img -U.
        await using var reader = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image},read-only=on,force-share=on");
        Assert.False(reader.HasExited);
    }

    [Fact]
    public async Task LockingOffSkipsTheLocks()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        await using var ours = await Daemon.StartAsync(dir, "--blockdev", $"driver=file,node-name=f0,filename={image},locking=off");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write 0 512", image)).Check("qemu-io writes despite us");
    }
}
