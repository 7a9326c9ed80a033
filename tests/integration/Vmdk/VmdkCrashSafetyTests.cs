using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Vmdk;

/// <summary>
/// kill -9 of the daemon while a client writes into a vmdk image (with and without a parent):
/// `qemu-img check` finds it clean, and every write acknowledged with FUA or followed by an
/// acknowledged flush reads back.
/// </summary>
public sealed class VmdkCrashSafetyTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task KilledWriterLeavesACleanImageWithEveryDurableWrite(bool withParent)
    {
        using var dir = new TempDir();
        var image = dir["top.vmdk"];
        if (withParent)
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "vmdk", dir["base.vmdk"], "4G")).Check("base");
            (await Tool.RunAsync("qemu-io", "-f", "vmdk", "-c", "write -P 0xbb 0 512M", dir["base.vmdk"])).Check("fill base");
            (await Tool.RunAsync("qemu-img", "create", "-f", "vmdk", "-b", dir["base.vmdk"], "-F", "vmdk", image)).Check("child");
        }
        else
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "vmdk", image, "4G")).Check("create");
        }

        await KillDuringWrites.RunAsync(dir, image, "vmdk", VmdkExport.Uri(dir), () => VmdkExport.StartAsync(dir, image, writable: true),
            rounds: 4, seed: withParent ? 11 : 5, async round =>
            {
                var check = await Tool.RunAsync("qemu-img", "check", image);
                Assert.True(check.ExitCode == 0, $"round {round}: qemu-img check exit {check.ExitCode}\n{check.Stdout}{check.Stderr}");
            });
    }
}
