using ExportServer.Block.Core;

namespace ExportServer.Server.Daemon;

/// <summary>--pidfile: written once every export is up (so it marks readiness), removed on exit.</summary>
internal sealed class PidFile : IDisposable
{
    private readonly string _path;

    private PidFile(string path) => _path = path;

    public static PidFile Write(string path)
    {
        try
        {
            var tmp = path + ".tmp";
            File.WriteAllText(tmp, Environment.ProcessId + "\n");
            File.Move(tmp, path, overwrite: true);
            return new PidFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BlockException.Invalid($"cannot create PID file: Could not create '{path}': {BlockException.Reason(e)}");
        }
    }

    public void Dispose()
    {
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Leaving a stale pidfile is harmless; the next start overwrites it.
        }
    }
}
