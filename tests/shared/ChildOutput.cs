using System.Diagnostics;

namespace ExportServer.TestSupport;

/// <summary>
/// Reads a child process's redirected stdout or stderr on a thread of its own. On Linux, .NET reads an
/// anonymous pipe "asynchronously" by blocking a thread-pool thread until data comes, so a server that
/// stays silent for its whole life would hold pool threads as long; a test's timers and continuations then
/// wait for the pool to grow, and a 200 ms delay can take a second.
/// </summary>
internal static class ChildOutput
{
    /// <summary>All the text until the child closes the stream.</summary>
    public static Task<string> ReadToEndAsync(StreamReader reader)
    {
        var done = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        Start(() => done.SetResult(reader.ReadToEnd()), done.SetException);
        return done.Task;
    }

    /// <summary>Calls <paramref name="onLine"/> for each line until the child closes the stream, then ends the task.</summary>
    public static Task ReadLinesAsync(StreamReader reader, Action<string> onLine)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Start(
            () =>
            {
                while (reader.ReadLine() is { } line)
                {
                    onLine(line);
                }

                done.SetResult();
            },
            done.SetException);
        return done.Task;
    }

    /// <summary>The standard output and error of a started process, both read to the end.</summary>
    public static (Task<string> Stdout, Task<string> Stderr) ReadBoth(Process process) =>
        (ReadToEndAsync(process.StandardOutput), ReadToEndAsync(process.StandardError));

    private static void Start(Action read, Action<Exception> fail)
    {
        var thread = new Thread(() =>
        {
            try
            {
                read();
            }
            catch (Exception e)
            {
                fail(e);
            }
        })
        { IsBackground = true, Name = "child-output" };
        thread.Start();
    }
}
