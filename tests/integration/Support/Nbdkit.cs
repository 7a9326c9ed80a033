namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// nbdkit as an NBD server below ours. It is started with a pid file, which nbdkit writes once it
/// listens (its socket file appears earlier). On this machine an nbdkit started within about a second
/// of another one stopping was seen to exit at once with status 0, so one that is not still running a
/// second after its pid file appeared is started again (after removing the socket file it may have
/// left behind). <paramref name="socket"/> is the unix socket it listens on.
/// </summary>
internal static class Nbdkit
{
    private const int Attempts = 10;

    public static async Task<Daemon> StartAsync(TempDir dir, string socket, params string[] args)
    {
        var pidFile = dir["nbdkit.pid"];
        var failures = new List<string>();
        for (var attempt = 1; ; attempt++)
        {
            File.Delete(pidFile);
            File.Delete(socket);
            var nbdkit = Daemon.Launch("/usr/bin/nbdkit", ["-f", "-P", pidFile, "-U", socket, .. args]);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!File.Exists(pidFile) && !nbdkit.HasExited && DateTime.UtcNow < deadline)
            {
                await Task.Delay(5);
            }

            if (File.Exists(pidFile))
            {
                await Task.Delay(TimeSpan.FromSeconds(1));
                if (!nbdkit.HasExited)
                {
                    return nbdkit;
                }
            }

            failures.Add($"attempt {attempt}: exited={nbdkit.HasExited} {nbdkit.Stderr.Trim()}");
            await nbdkit.DisposeAsync();
            if (attempt == Attempts)
            {
                throw new InvalidOperationException($"nbdkit did not stay up: {string.Join("; ", failures)}");
            }
        }
    }
}
