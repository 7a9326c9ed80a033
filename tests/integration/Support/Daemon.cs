using System.Diagnostics;
using System.Text;

namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// The real export-server process (or qemu-storage-daemon, as an oracle) started with a command line;
/// ready once its pidfile exists, which the daemon writes after every export is up.
/// </summary>
internal sealed class Daemon : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly StringBuilder _stdout = new();

    private Daemon(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    public string Stdout
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public static string ExportServerPath
    {
        get
        {
            var fromEnv = Environment.GetEnvironmentVariable("EXPORT_SERVER_BIN");
            if (!string.IsNullOrEmpty(fromEnv))
            {
                return fromEnv;
            }

            var dir = AppContext.BaseDirectory;
            while (dir is not null && !File.Exists(Path.Combine(dir, "ExportServer.sln")))
            {
                dir = Path.GetDirectoryName(dir);
            }

            return dir is null
                ? throw new InvalidOperationException("set EXPORT_SERVER_BIN or run scripts/build")
                : Path.Combine(dir, "out", "export-server");
        }
    }

    /// <summary>Starts export-server with <paramref name="args"/> plus a pidfile, and waits until it is ready.</summary>
    public static Task<Daemon> StartAsync(TempDir dir, params string[] args) => StartAsync(ExportServerPath, dir, args);

    /// <summary>Starts qemu-storage-daemon with the same kind of arguments (the reference implementation).</summary>
    public static Task<Daemon> StartQsdAsync(TempDir dir, params string[] args) => StartAsync("/usr/bin/qemu-storage-daemon", dir, args);

    public static async Task<Daemon> StartAsync(string exe, TempDir dir, string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var pid = dir[$"daemon-{Guid.NewGuid():N}.pid"];
        var d = Launch(exe, [.. args, "--pidfile", pid], environment);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!File.Exists(pid))
        {
            if (d._process.HasExited)
            {
                throw new InvalidOperationException($"{exe} exited with {d._process.ExitCode}: {d.Stderr}");
            }

            if (DateTime.UtcNow > deadline)
            {
                await d.DisposeAsync();
                throw new TimeoutException($"{exe} did not become ready: {d.Stderr}");
            }

            await Task.Delay(10);
        }

        return d;
    }

    /// <summary>Starts the process without waiting for readiness (for tests of startup failures).</summary>
    public static Daemon Launch(string exe, string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + exe);
        var d = new Daemon(p);
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (d._stderr)
                {
                    d._stderr.AppendLine(e.Data);
                }
            }
        };
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (d._stdout)
                {
                    d._stdout.AppendLine(e.Data);
                }
            }
        };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return d;
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>Sends a signal (SIGTERM = 15, SIGKILL = 9, SIGINT = 2).</summary>
    public void Signal(int signal)
    {
        using var kill = Process.Start("/bin/kill", [$"-{signal}", _process.Id.ToString()]);
        kill.WaitForExit();
    }

    /// <summary>SIGTERM and wait; returns the exit status.</summary>
    public async Task<int> StopAsync()
    {
        if (!_process.HasExited)
        {
            Signal(15);
        }

        return await WaitForExitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Signal(15);
            try
            {
                await WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.Dispose();
    }
}
