using System.Runtime.InteropServices;

namespace ExportServer.Server.Native;

/// <summary>The few process-level libc calls the daemon needs (daemonizing, signal dispositions).</summary>
internal static partial class Libc
{
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int setsid();

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int dup2(int oldfd, int newfd);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int getpid();

    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint signal(int signum, nint handler);

    internal const int O_RDWR = 2;
    internal const int SIGINT = 2;
    internal const nint SIG_DFL = 0;
}
