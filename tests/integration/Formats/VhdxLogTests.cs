using System.Security.Cryptography;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// A vhdx left dirty (our daemon killed after allocating writes, its log still active): qemu-img
/// sees a log to replay; a read-only open here replays it in memory and leaves the file alone; a
/// writable open replays it into the file, after which qemu-img finds it clean. Both read as
/// qemu-img's own replay does.
/// </summary>
public sealed class VhdxLogTests
{
    [Fact]
    public async Task DirtyImageReplaysHereAsInQemuImg()
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -q -f vhdx img 256M");
        var killed = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["img"]}",
            "--blockdev", "driver=vhdx,node-name=n0,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk,writable=on");
        (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x31 0 1M", "write -P 0x32 50M 3M", "write -P 0x33 200M 64k"]))).Check("writes");
        killed.Signal(9);
        await killed.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await killed.DisposeAsync();
        var dirty = await Tool.RunAsync("qemu-img", "info", "-f", "vhdx", dir["img"]);
        Assert.Contains("contains a log that needs to be replayed", dirty.Stderr);

        File.Copy(dir["img"], dir["qemu"]);
        (await Tool.RunAsync("qemu-img", "check", "-r", "all", "-f", "vhdx", dir["qemu"])).Check("qemu-img replay");
        await ShAsync(dir, "qemu-img convert -f vhdx -O raw qemu expected.raw");
        (await Tool.ShAsync(Io("raw", dir["expected.raw"], ["read -P 0x32 50M 3M"]))).Check("the writes are in qemu-img's replay");

        var before = SHA256.HashData(await File.ReadAllBytesAsync(dir["img"]));
        await using (var ro = await ServeAsync(dir, "vhdx", dir["img"], writable: false))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
        }

        Assert.Equal(before, SHA256.HashData(await File.ReadAllBytesAsync(dir["img"])));
        await using (var rw = await ServeAsync(dir, "vhdx", dir["img"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
        }

        await AssertCheckCleanAsync(dir["img"], "vhdx");
        await AssertSameAsync(dir["expected.raw"], dir["img"], "vhdx");
    }
}
