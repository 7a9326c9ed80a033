using System.Diagnostics;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Distributed;

/// <summary>What the tests that stop a cluster under load share: stopping its daemons, qemu-io runs that may fail, waiting for it to serve again.</summary>
internal static class ClusterDaemons
{
    /// <summary>Sends SIGTERM to the processes the pid files name and waits (at most 30 s) until they are gone.</summary>
    public static async Task StopAsync(IEnumerable<string> pidFiles)
    {
        var pids = pidFiles.Select(f => File.ReadAllText(f).Trim()).Where(p => p.Length > 0).ToArray();
        foreach (var pid in pids)
        {
            await Tool.RunAsync("kill", "-TERM", pid);
        }

        var clock = Stopwatch.StartNew();
        while (pids.Any(p => Directory.Exists("/proc/" + p)))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the cluster's daemons did not stop within 30 s");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// A daemon serving <paramref name="node"/>, a 64 MiB raw image made here at <paramref name="uri"/>
    /// with 0x42 in its first 32 MiB, as the export of its node name, and a local 1 MiB file of 0x17
    /// as export "l0": what the tests that stop a cluster under load start from.
    /// </summary>
    public static async Task<JobDaemon> StartWithTwoExportsAsync(TempDir dir, string uri, JsonObject node)
    {
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "raw", uri, "64M");
        await JobDaemon.QemuIoAsync(uri, "raw", "write -P 0x42 0 32M");
        var local = dir["local.raw"];
        await File.WriteAllBytesAsync(local, Enumerable.Repeat((byte)0x17, 1 << 20).ToArray());
        var d = await JobDaemon.StartAsync(dir, "a");
        try
        {
            var name = node["node-name"]!.GetValue<string>();
            await d.Qmp.ExecuteAsync("blockdev-add", node);
            await d.ExportAsync(name);
            await d.AddImageAsync("l0", local, "raw");
            await d.ExportAsync("l0");
            await JobDaemon.QemuIoAsync(d.NbdUri(name), "nbd", "read -P 0x42 0 1M");
            return d;
        }
        catch
        {
            await d.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// After the cluster's restart: waits (at most <paramref name="limit"/>) until <paramref name="export"/>
    /// serves again, reading the data from before and writing new, then quits the daemon and reads
    /// both through <paramref name="uri"/>, the image's own name. Returns how long serving again took.
    /// </summary>
    public static async Task<TimeSpan> ServesAgainAsync(JobDaemon d, string export, string uri, TimeSpan limit)
    {
        var back = await UntilServesAsync(d.NbdUri(export), limit, "read -P 0x42 16M 1M", "write -P 0x66 40M 1M", "flush", "read -P 0x66 40M 1M");
        await JobDaemon.QemuIoAsync(d.NbdUri(export), "nbd", "read -P 0x42 0 32M");
        await d.Qmp.ExecuteAsync("query-named-block-nodes");
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        await JobDaemon.QemuIoAsync(uri, "raw", "read -P 0x42 0 32M", "read -P 0x66 40M 1M");
        return back;
    }

    /// <summary>qemu-io's commands on an NBD export, whose failures the caller inspects (stdout and stderr together).</summary>
    public static async Task<string> QemuIoAsync(string uri, params string[] commands)
    {
        var r = await Tool.RunAsync("qemu-io", ["-f", "raw", .. commands.SelectMany(c => new[] { "-c", c }), uri], TimeSpan.FromSeconds(80));
        return r.Stdout + r.Stderr;
    }

    /// <summary>A client writing, flushing and reading back through <paramref name="uri"/> again and again until a request fails; returns that run's output.</summary>
    public static async Task<string> LoadUntilFailureAsync(string uri, string offset)
    {
        while (true)
        {
            var output = await QemuIoAsync(uri, $"write -P 0x55 {offset} 1M", "flush", $"read -P 0x55 {offset} 1M");
            if (output.Contains("failed", StringComparison.Ordinal))
            {
                return output;
            }
        }
    }

    /// <summary>Repeats <paramref name="commands"/> until they all succeed, for at most <paramref name="limit"/>; returns how long it took.</summary>
    public static async Task<TimeSpan> UntilServesAsync(string uri, TimeSpan limit, params string[] commands)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var output = await QemuIoAsync(uri, commands);
            if (!output.Contains("failed", StringComparison.Ordinal) && !output.Contains("error", StringComparison.OrdinalIgnoreCase))
            {
                return clock.Elapsed;
            }

            Assert.True(clock.Elapsed < limit, $"the export did not serve again within {limit.TotalSeconds} s: {output}");
            await Task.Delay(500);
        }
    }
}
