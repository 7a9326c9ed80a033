using System.Diagnostics;
using System.Text;

namespace ExportServer.IntegrationTests.Support;

/// <summary>Runs an external program (qemu-img, nbdinfo, …) to completion with a timeout.</summary>
internal static class Tool
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public Result Check(string what)
        {
            if (ExitCode != 0)
            {
                throw new InvalidOperationException($"{what} failed with {ExitCode}:\n{Stdout}\n{Stderr}");
            }

            return this;
        }
    }

    public static async Task<Result> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin:" + Environment.GetEnvironmentVariable("PATH");
        if (env is not null)
        {
            foreach (var (k, v) in env)
            {
                psi.Environment[k] = v;
            }
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + file);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
        }

        p.StandardInput.Close();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in time");
        }

        return new Result(p.ExitCode, await stdout, await stderr);
    }

    public static Task<Result> RunAsync(string file, params string[] args) => RunAsync(file, (IEnumerable<string>)args);

    /// <summary>Runs a shell command line (bash -c).</summary>
    public static Task<Result> ShAsync(string command, TimeSpan? timeout = null) => RunAsync("/bin/bash", ["-c", command], timeout);

    /// <summary>nbdsh with Debian's python3 (which has libnbd's nbd module) running a script.</summary>
    public static Task<Result> NbdshAsync(string uri, string script) =>
        RunAsync("/usr/bin/nbdsh", ["-u", uri, "-c", script]);

    /// <summary>A Python script using libnbd, run with Debian's python3.</summary>
    public static Task<Result> PythonAsync(string script, TimeSpan? timeout = null) =>
        RunAsync("/usr/bin/python3", ["-c", script], timeout);

    public static string Hex(byte[] data)
    {
        var sb = new StringBuilder();
        foreach (var b in data)
        {
            sb.Append(b.ToString("x2"));
        }

        return sb.ToString();
    }
}
