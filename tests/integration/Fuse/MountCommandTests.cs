using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Fuse;

/// <summary>`export-server mount IMAGE FILE`: a probed qcow2 chain as a regular file until SIGTERM.</summary>
public sealed class MountCommandTests
{
    [Fact]
    public async Task MountedQcow2ChainEqualsQemuImgConvertAndWritesStayClean()
    {
        using var dir = new TempDir();
        var (base_, top) = (dir["base.qcow2"], dir["top.qcow2"]);
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", base_, "64M")).Check("base");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 8M", "-c", "write -P 0x42 32M 1M", base_)).Check("fill base");
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)).Check("top");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x43 4M 2M", top)).Check("fill top");
        var expected = dir["expected.raw"];
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", top, expected)).Check("convert");
        var mount = await MountedImage.CompareAndWriteAsync(dir, top, expected, 1000000, 3000);

        Assert.False((await Tool.RunAsync("/bin/mountpoint", "-q", mount)).ExitCode == 0, "still mounted after SIGTERM");
        (await Tool.RunAsync("qemu-img", "check", top)).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "qcow2", "-F", "raw", top, expected)).Check("compare");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x41 0 4M", base_)).Check("base untouched");
    }

    [Fact]
    public async Task ReadOnlyMountRefusesWrites()
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
        var pid = dir["m.pid"];
        var d = Daemon.Launch(Daemon.ExportServerPath, ["mount", image, dir["ro.raw"], "--read-only", "--pidfile", pid]);
        await using (d)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(pid) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10);
            }

            var r = await Tool.ShAsync($"dd if=/dev/zero of={dir["ro.raw"]} bs=4k count=1 conv=notrunc status=none");
            Assert.NotEqual(0, r.ExitCode);
            Assert.Equal(16L << 20, new FileInfo(dir["ro.raw"]).Length);
        }
    }

    [Theory]
    [InlineData("missing-image")]
    [InlineData("no-file-argument")]
    [InlineData("directory")]
    public async Task BadArgumentsFailBeforeMounting(string kind)
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "1M")).Check("create");
        Directory.CreateDirectory(dir["adir"]);
        string[] args = kind switch
        {
            "missing-image" => ["mount", dir["nope.qcow2"], dir["m.raw"]],
            "no-file-argument" => ["mount", image],
            _ => ["mount", image, dir["adir"]],
        };
        var r = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("export-server: ", r.Stderr);
        Assert.Contains(kind switch
        {
            "missing-image" => "No such file or directory",
            "no-file-argument" => "usage: mount IMAGE FILE",
            _ => "is not a regular file",
        }, r.Stderr);
    }
}
