using System.Diagnostics;

namespace ExportServer.IntegrationTests.Support;

/// <summary>strace attached to a running daemon (every thread), writing the calls it sees to a file.</summary>
internal sealed class Strace : IAsyncDisposable
{
    private readonly Process _process;

    private Strace(Process process, string output)
    {
        _process = process;
        Output = output;
    }

    /// <summary>Where the trace goes.</summary>
    public string Output { get; }

    /// <summary>
    /// Attaches to <paramref name="pid"/> tracing <paramref name="calls"/> (strace's -e trace= list) and waits until every thread is traced.
    /// Buffers and arrays are left out of the trace unless <paramref name="arguments"/> is set.
    /// With <paramref name="perThread"/>, each thread's calls go to a file of their own (strace -ff), where
    /// no call is split by another thread's; read them with <see cref="StopByThreadAsync"/>.
    /// </summary>
    public static async Task<Strace> AttachAsync(int pid, string calls, string output, bool arguments = false, bool perThread = false)
    {
        var process = Process.Start(new ProcessStartInfo("strace", [perThread ? "-ff" : "-f", "-qq", "-s", arguments ? "32" : "0", "-e", $"trace={calls}", "-o", output, "-p", pid.ToString()])
        {
            RedirectStandardError = true,
        })!;
        var strace = new Strace(process, output);
        for (var i = 0; i < 100; i++)
        {
            var threads = Directory.GetDirectories($"/proc/{pid}/task");
            if (threads.All(t => File.ReadAllLines(Path.Combine(t, "status")).Any(l => l.StartsWith("TracerPid:", StringComparison.Ordinal) && l.Trim() != "TracerPid:\t0")))
            {
                return strace;
            }

            await Task.Delay(50);
        }

        await strace.DisposeAsync();
        throw new TimeoutException("strace did not attach");
    }

    /// <summary>Stops tracing and returns the lines traced.</summary>
    public async Task<List<string>> StopAsync()
    {
        await DisposeAsync();
        return [.. File.ReadAllLines(Output)];
    }

    /// <summary>Stops tracing and returns the lines traced in each thread (see AttachAsync's perThread).</summary>
    public async Task<List<string[]>> StopByThreadAsync()
    {
        await DisposeAsync();
        var directory = Path.GetDirectoryName(Output)!;
        return [.. Directory.GetFiles(directory, Path.GetFileName(Output) + ".*").Select(File.ReadAllLines)];
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
