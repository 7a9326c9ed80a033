using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Fuse;

/// <summary>The FUSE export through the kernel mount, driven with coreutils, qemu-img, python and fio.</summary>
public sealed class FuseExportTests
{
    private static async Task<(TempDir Dir, string Image, string Mount)> PrepareAsync(string size = "64M")
    {
        var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, size)).Check("create");
        if (size == "64M")
        {
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 8M 2M", image)).Check("fill");
        }

        var mount = dir["mnt.raw"];
        await File.WriteAllBytesAsync(mount, []);
        return (dir, image, mount);
    }

    private static string[] Args(string image, string mount, string extra = "writable=on") =>
    [
        "--blockdev", $"driver=file,node-name=f0,filename={image},discard=unmap",
        "--export", $"type=fuse,id=fx,node-name=f0,mountpoint={mount},{extra}",
    ];

    private static async Task<bool> IsMountedAsync(string path) =>
        (await Tool.RunAsync("/bin/mountpoint", "-q", path)).ExitCode == 0;

    [Fact]
    public async Task MountedFileEqualsTheImageAndWritesLand()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        {
            var expected = dir["expected.raw"];
            (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, expected)).Check("convert");
            await using (var d = await Daemon.StartAsync(dir, Args(image, mount)))
            {
                Assert.True(await IsMountedAsync(mount));
                Assert.Equal(64L << 20, new FileInfo(mount).Length);
                (await Tool.RunAsync("cmp", mount, expected)).Check("cmp");

                (await Tool.ShAsync($"head -c 777777 /dev/urandom > {dir["pat"]} && dd if={dir["pat"]} of={mount} bs=777 seek=3001 conv=notrunc status=none && " +
                                    $"dd if={dir["pat"]} of={expected} bs=777 seek=3001 conv=notrunc status=none && sync {mount}")).Check("dd");
                (await Tool.RunAsync("cmp", mount, expected)).Check("cmp after dd");
                Assert.Equal(0, await d.StopAsync());
            }

            Assert.False(await IsMountedAsync(mount));
            (await Tool.RunAsync("cmp", image, expected)).Check("image after unmount");
        }
    }

    [Fact]
    public async Task SeekDataAndHoleMatchQemuImgMap()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        await using (var d = await Daemon.StartAsync(dir, Args(image, mount, "writable=off")))
        {
            var r = (await Tool.PythonAsync($$"""
                import os
                fd = os.open("{{mount}}", os.O_RDONLY)
                size = os.fstat(fd).st_size
                off, out = 0, []
                while off < size:
                    try:
                        data = os.lseek(fd, off, os.SEEK_DATA)
                    except OSError:
                        break
                    hole = os.lseek(fd, data, os.SEEK_HOLE)
                    out.append(f"{data}-{hole}")
                    off = hole
                print(" ".join(out))
                """)).Check("lseek").Stdout.Trim();
            Assert.Equal($"0-{1 << 20} {8 << 20}-{10 << 20}", r);
        }
    }

    [Fact]
    public async Task PunchHoleReadsZeroesAndFreesSpace()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        await using (var d = await Daemon.StartAsync(dir, Args(image, mount)))
        {
            var before = (await Tool.RunAsync("stat", "-c", "%b", image)).Check("stat").Stdout.Trim();
            (await Tool.RunAsync("fallocate", "-p", "-o", "8M", "-l", "2M", mount)).Check("punch");
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-r", "-U", "-c", "read -P 0 8M 2M", image)).Check("zeroes");
            var after = (await Tool.RunAsync("stat", "-c", "%b", image)).Check("stat").Stdout.Trim();
            Assert.True(long.Parse(after) < long.Parse(before), $"blocks {before} -> {after}");
        }
    }

    [Fact]
    public async Task GrowableExportGrowsOnWritePastTheEnd()
    {
        var (dir, image, mount) = await PrepareAsync("1M");
        using (dir)
        await using (var d = await Daemon.StartAsync(dir, Args(image, mount, "writable=on,growable=on")))
        {
            (await Tool.ShAsync($"printf 'tail-data' | dd of={mount} bs=1 seek=3145728 conv=notrunc status=none")).Check("dd");
            Assert.Equal(3145728 + 9, new FileInfo(mount).Length);
            Assert.Equal(3145728 + 9, new FileInfo(image).Length);
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-r", "-U", "-c", "read -P 0 1M 2M", image)).Check("gap reads as zeroes");
        }
    }

    [Fact]
    public async Task ReadOnlyMountRefusesWrites()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        await using (var d = await Daemon.StartAsync(dir, Args(image, mount, "writable=off")))
        {
            var r = await Tool.ShAsync($"dd if=/dev/zero of={mount} bs=4k count=1 conv=notrunc status=none");
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("Permission denied", r.Stderr);
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-r", "-U", "-c", "read -P 0x11 0 1M", image)).Check("unchanged");
        }
    }

    [Fact]
    public async Task FioRandomReadWriteVerifyWithFourJobs()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        await using (var d = await Daemon.StartAsync(dir, Args(image, mount)))
        {
            (await Tool.RunAsync("fio", ["--name=v", $"--filename={mount}", "--rw=randrw", "--bs=4k", "--numjobs=4", "--ioengine=psync",
                "--verify=crc32c", "--verify_fatal=1", "--offset_increment=16M", "--size=16M", "--group_reporting"], TimeSpan.FromMinutes(3))).Check("fio");
            Assert.False(d.HasExited);
        }
    }

    /// <summary>
    /// Large writes (1 MiB, written from libfuse's buffer without a copy) from four fio jobs into a
    /// qcow2 image, where most allocate clusters: fio's verify reads them back through the mount, and
    /// after the daemon stops the image checks clean and holds what the mount showed.
    /// </summary>
    [Fact]
    public async Task LargeWritesFromFourJobsLandInAQcow2Image()
    {
        using var dir = new TempDir();
        var image = dir["disk.qcow2"];
        var mount = dir["mnt.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "64M")).Check("create");
        await File.WriteAllBytesAsync(mount, []);
        await using (var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--export", $"type=fuse,id=fx,node-name=q0,mountpoint={mount},writable=on"))
        {
            (await Tool.RunAsync("fio", ["--name=v", $"--filename={mount}", "--rw=write", "--bs=1M", "--numjobs=4", "--ioengine=psync",
                "--verify=crc32c", "--verify_fatal=1", "--offset_increment=16M", "--size=16M", "--group_reporting"], TimeSpan.FromMinutes(3))).Check("fio");
            (await Tool.ShAsync($"cp {mount} {dir["seen.raw"]}")).Check("copy through the mount");
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "qcow2", dir["seen.raw"], image)).Check("compare");
    }

    [Fact]
    public async Task StaleMountAfterKillIsReportedClearly()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        {
            var d = await Daemon.StartAsync(dir, Args(image, mount));
            d.Signal(9);
            await d.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await d.DisposeAsync();

            var again = await Tool.RunAsync(Daemon.ExportServerPath, Args(image, mount), TimeSpan.FromSeconds(30));
            Assert.Equal(1, again.ExitCode);
            Assert.Contains("stale FUSE mount", again.Stderr);
            Assert.Contains("fusermount3 -u", again.Stderr);

            (await Tool.RunAsync("fusermount3", "-u", mount)).Check("fusermount3 -u");
            await using var d2 = await Daemon.StartAsync(dir, Args(image, mount));
            Assert.True(await IsMountedAsync(mount));
        }
    }

    [Fact]
    public async Task BadMountpointsAreRefused()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "1M")).Check("create");
        var missing = await Tool.RunAsync(Daemon.ExportServerPath, Args(image, dir["nope"]));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("No such file or directory", missing.Stderr);
        Directory.CreateDirectory(dir["adir"]);
        var directory = await Tool.RunAsync(Daemon.ExportServerPath, Args(image, dir["adir"]));
        Assert.Equal(1, directory.ExitCode);
        Assert.Contains("is not a regular file", directory.Stderr);
    }

    [Fact]
    public async Task NbdAndWritableFuseOnOneNodeSeeEachOther()
    {
        var (dir, image, mount) = await PrepareAsync();
        using (dir)
        await using (var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on",
            "--export", $"type=fuse,id=fx,node-name=f0,mountpoint={mount},writable=on"))
        {
            var uri = $"nbd+unix:///disk?socket={dir["s.sock"]}";
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x66 4M 64k", uri)).Check("nbd write");
            (await Tool.ShAsync($"dd if={mount} bs=64k skip=64 count=1 status=none | od -v -An -tx1 | sort -u")).Check("fuse read").Stdout.Trim()
                .Split('\n').ToList().ForEach(l => Assert.Equal("66 66 66 66 66 66 66 66 66 66 66 66 66 66 66 66", l.Trim()));
            (await Tool.RunAsync("truncate", "-s", "80M", mount)).Check("truncate via FUSE");
            var size = (await Tool.RunAsync("nbdinfo", "--size", uri)).Check("nbdinfo").Stdout.Trim();
            Assert.Equal((80L << 20).ToString(), size);
        }
    }
}
