using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// kill -9 of the daemon while a client writes into a qcow2 image (with and without a backing
/// file): `qemu-img check` must find no corruption (leaked clusters are allowed) and every write
/// acknowledged with FUA, or followed by an acknowledged flush, must read back.
/// </summary>
public sealed class CrashSafetyTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task KilledWriterLeavesACleanImageWithEveryDurableWrite(bool withBacking)
    {
        using var dir = new TempDir();
        var image = dir["top.qcow2"];
        if (withBacking)
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], "4G")).Check("base");
            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0xbb 0 512M", dir["base.qcow2"])).Check("fill base");
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-b", dir["base.qcow2"], "-F", "qcow2", image)).Check("overlay");
        }
        else
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "4G")).Check("create");
        }

        // Writes mix sizes within and across clusters and partial clusters.
        var writer = new DurableWriter(dir, 196608, [0, 512, 4096, 65536 - 1024], [512, 4096, 65536, 100000, 131072]);
        var rnd = new Random(withBacking ? 7 : 3);
        for (var round = 0; round < 5; round++)
        {
            var uri = $"nbd+unix:///disk?socket={dir["s.sock"]}";
            var d = await Daemon.StartAsync(dir,
                "--blockdev", $"driver=file,node-name=f0,filename={image}",
                "--blockdev", "driver=qcow2,node-name=q0,file=f0",
                "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
                "--export", "type=nbd,id=e0,node-name=q0,name=disk,writable=on");
            var writing = writer.StartRound(uri, round, round * 4000, (round + 1) * 4000, 1);
            await Task.Delay(300 + rnd.Next(1200));
            d.Signal(9);
            await d.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await d.DisposeAsync();
            await writer.EndRoundAsync(writing, round);
            var check = await Tool.RunAsync("qemu-img", "check", "--output=json", image);
            Assert.True(check.ExitCode is 0 or 3, $"round {round}: qemu-img check exit {check.ExitCode}\n{check.Stdout}{check.Stderr}");
            var report = JsonDocument.Parse(check.Stdout).RootElement;
            Assert.False(report.TryGetProperty("corruptions", out var c) && c.GetInt32() > 0, check.Stdout);
        }

        await writer.VerifyAsync("qcow2", image, 100);
    }
}
