using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// Migration over several NBD connections: A's nbd node opens its remote target with multi-conn=4,
/// the target server (ours, or qemu-storage-daemon, which both advertise NBD_FLAG_CAN_MULTI_CONN)
/// sees four connections, and A mirrors its disk into it while a client writes.
/// </summary>
public sealed class MultiConnMigrationTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MirrorOverFourConnectionsWhileWriting(bool targetIsQsd)
    {
        using var dir = new TempDir();
        var (src, dst) = await MigrationImages.CreateAsync(dir, "full");
        var port = FreePort.Get();
        string[] targetArgs =
        [
            "--blockdev", $"driver=file,node-name=f0,filename={dst}",
            "--blockdev", "driver=qcow2,node-name=target,file=f0",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
            "--export", "type=nbd,id=e0,node-name=target,name=target,writable=on",
        ];
        var b = targetIsQsd ? await Daemon.StartQsdAsync(dir, targetArgs) : await Daemon.StartAsync(dir, targetArgs);
        await using (b)
        {
            await using var a = await StartAsync(dir, "a");
            await a.AddImageAsync("disk", src);
            await a.ExportAsync("disk");
            await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "target", ["multi-conn"] = 4,
                ["server"] = new JsonObject { ["type"] = "inet", ["host"] = "127.0.0.1", ["port"] = port.ToString() },
            });
            Assert.Equal(4, await ServerConnectionsAsync(port));

            await MigrationImages.MirrorWhileWritingAsync(a, "full");
            Assert.Equal(4, await ServerConnectionsAsync(port));
            await a.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "remote" });
            Assert.Equal(0, await ServerConnectionsAsync(port));
            await a.Qmp.ExecuteAsync("quit");
            await a.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, await b.StopAsync());
        }

        await AssertSameAsync(src, dst);
        await QemuIoAsync(dst, "qcow2", "read -P 0x66 12M 100k", "read -P 0x5b 31M 1M");
        (await Tool.RunAsync("qemu-img", "check", dst)).Check("check");
    }

    /// <summary>
    /// The connections the server holds on <paramref name="port"/> (established, seen from its side), once
    /// the count has settled: a closed connection may take a moment to leave the table.
    /// </summary>
    private static async Task<int> ServerConnectionsAsync(int port)
    {
        var count = -1;
        for (var i = 0; i < 50; i++)
        {
            var ss = (await Tool.RunAsync("ss", "-tnH", "state", "established", "sport", "=", $":{port}")).Check("ss").Stdout;
            var now = ss.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
            if (now == count)
            {
                return now;
            }

            count = now;
            await Task.Delay(100);
        }

        return count;
    }
}
