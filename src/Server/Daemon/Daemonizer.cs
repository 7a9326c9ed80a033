using System.Diagnostics;
using ExportServer.Server.Native;

namespace ExportServer.Server.Daemon;

/// <summary>
/// --daemonize without fork(): the parent starts itself again as a detached child and waits until
/// the child reports "ready" on its stdout (everything is listening) or exits with an error, whose
/// stderr the parent passes on. The child then detaches its stdio.
/// </summary>
internal static class Daemonizer
{
    private const string ChildVariable = "EXPORT_SERVER_DAEMON_CHILD";
    private const string ReadyLine = "export-server-ready";

    public static bool IsChild => Environment.GetEnvironmentVariable(ChildVariable) == "1";

    /// <summary>Runs in the parent: returns the exit status for the parent process.</summary>
    public static int RunParent(IEnumerable<string> args)
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        if (exe.EndsWith("/dotnet", StringComparison.Ordinal) && Environment.GetCommandLineArgs() is [var dll, ..])
        {
            psi.ArgumentList.Add(dll);
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment[ChildVariable] = "1";
        using var child = Process.Start(psi) ?? throw new InvalidOperationException("cannot start the daemon process");
        var stderr = child.StandardError.ReadToEndAsync();
        while (child.StandardOutput.ReadLine() is { } line)
        {
            if (line == ReadyLine)
            {
                return 0;
            }
        }

        child.WaitForExit();
        Console.Error.Write(stderr.Result);
        return child.ExitCode == 0 ? 1 : child.ExitCode;
    }

    /// <summary>Runs in the child at start: a new session, away from the parent's terminal.</summary>
    public static void DetachSession() => Libc.setsid();

    /// <summary>Runs in the child once everything is up: tell the parent, then drop stdio.</summary>
    public static void SignalReady()
    {
        Console.Out.WriteLine(ReadyLine);
        Console.Out.Flush();
        var devNull = Libc.open("/dev/null", Libc.O_RDWR);
        if (devNull >= 0)
        {
            Libc.dup2(devNull, 0);
            Libc.dup2(devNull, 1);
            Libc.dup2(devNull, 2);
            Libc.close(devNull);
        }
    }
}
