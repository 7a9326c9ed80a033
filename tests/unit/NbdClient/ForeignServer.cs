using System.Diagnostics;
using System.Net.Sockets;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>
/// A real NBD server (qemu-nbd, nbdkit) run as a child process on a unix socket; started, and ready once
/// the socket accepts connections. A missing tool fails the test: it is never skipped.
/// </summary>
internal sealed class ForeignServer : IDisposable
{
    private readonly Process _process;

    private ForeignServer(Process process)
    {
        _process = process;
    }

    /// <summary>
    /// Starts the process from a thread of its own that lives as long as the server. nbdkit asks for SIGTERM
    /// when its parent goes (PR_SET_PDEATHSIG), and Linux means the thread that forked it: started from a
    /// pool thread, it would quit whenever the pool retires that thread.
    /// </summary>
    private static Process StartOnOwnThread(ProcessStartInfo info)
    {
        Process? process = null;
        Exception? failure = null;
        using var started = new ManualResetEventSlim();
        var parent = new Thread(() =>
        {
            try
            {
                process = Process.Start(info);
            }
            catch (Exception e)
            {
                failure = e;
            }

            started.Set();
            process?.WaitForExit();
        })
        { IsBackground = true, Name = "foreign-server" };
        parent.Start();
        started.Wait();
        return process ?? throw new InvalidOperationException($"cannot start {info.FileName}", failure);
    }

    public static async Task<ForeignServer> StartAsync(string socketPath, string program, params string[] args)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        var server = new ForeignServer(StartOnOwnThread(info));
        var process = server._process;
        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{program} exited with {process.ExitCode}: {await stderr}");
            }

            if (File.Exists(socketPath))
            {
                using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await probe.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
                    return server;
                }
                catch (SocketException)
                {
                    // Bound but not listening yet.
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                server.Dispose();
                throw new TimeoutException($"{program} did not listen on {socketPath}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Kills the server at once (SIGKILL), as a crash would.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        _process.WaitForExit();
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    /// <summary>Runs a tool to completion and returns its standard output; a failure throws with its standard error.</summary>
    public static async Task<string> RunAsync(string program, params string[] args)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var p = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return p.ExitCode == 0 ? await stdout : throw new InvalidOperationException($"{program} failed ({p.ExitCode}): {await stderr}");
    }
}
