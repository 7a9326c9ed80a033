namespace ExportServer.IntegrationTests.Support;

/// <summary>A scratch directory under /tmp (short paths: unix socket paths are limited to 107 bytes).</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("es-").FullName;
    }

    public string Path { get; }

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A mount or a lingering socket; /tmp is cleaned eventually.
        }
    }
}
