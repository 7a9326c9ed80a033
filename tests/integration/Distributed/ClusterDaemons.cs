using System.Diagnostics;
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
