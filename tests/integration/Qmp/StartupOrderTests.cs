using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// Monitors answer only once every command-line option has been processed, as in
/// qemu-storage-daemon: a client that connects the moment the monitor's socket appears, while a
/// later --blockdev still waits for a slow NBD server, sees every node the command line adds.
/// </summary>
public sealed class StartupOrderTests
{
    private const int NodeCount = 40;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EarlyClientSeesEveryNodeOfTheCommandLine(bool qsd)
    {
        using var dir = new TempDir();

        // nbdkit opens the export 3 s after the client asks for it, so the NBD node's --blockdev
        // takes that long and the options after it wait.
        await using var nbdkit = await Nbdkit.StartAsync(dir, dir["nbd.sock"], "--filter=delay", "memory", "1M", "delay-open=3");

        var names = Enumerable.Range(0, NodeCount).Select(i => i == 2 ? "remote" : $"n{i:00}").ToList();
        List<string> args = ["--chardev", $"socket,id=m,path={dir["qmp.sock"]},server=on,wait=off", "--monitor", "chardev=m"];
        foreach (var name in names)
        {
            args.Add("--blockdev");
            args.Add(name == "remote"
                ? $"driver=nbd,node-name=remote,server.type=unix,server.path={dir["nbd.sock"]}"
                : $"driver=null-co,node-name={name},size=1048576,read-zeroes=on");
        }

        await using var d = Daemon.Launch(qsd ? "/usr/bin/qemu-storage-daemon" : Daemon.ExportServerPath, [.. args]);
        await WaitForFileAsync(d, dir["qmp.sock"]);
        await using var c = await QmpClient.ConnectAsync(dir["qmp.sock"]);

        var nodes = (JsonArray)await c.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        Assert.Equal(names.Order(), nodes.Select(n => n!["node-name"]!.GetValue<string>()).Order());

        // The last node of the command line mirrored onto the remote one, as a migration script would.
        await c.ExecuteAsync("blockdev-mirror", new JsonObject { ["job-id"] = "ws", ["device"] = "n39", ["target"] = "remote", ["sync"] = "full" });
        await c.WaitEventAsync("BLOCK_JOB_READY");
        await c.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "ws" });
        var completed = await c.WaitEventAsync("BLOCK_JOB_COMPLETED");
        Assert.Null(completed["data"]!["error"]);
        Assert.Equal(0, await d.StopAsync());
    }

    /// <summary>Polls for a socket file so the client comes in the moment it appears.</summary>
    private static async Task WaitForFileAsync(Daemon process, string path)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!File.Exists(path))
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"exited before {path} appeared: {process.Stderr}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{path} did not appear: {process.Stderr}");
            }

            await Task.Delay(1);
        }
    }
}
