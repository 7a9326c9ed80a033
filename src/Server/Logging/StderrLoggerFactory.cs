using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Logging;

/// <summary>
/// The daemon's logger factory: every logger comes from the one stderr provider, which alone decides
/// what is written (errors and warnings always, traces by --trace pattern). A general-purpose factory
/// would build a dependency-injection container at start-up, which in the native binary costs
/// milliseconds of constructing generic types before the first socket is open.
/// </summary>
internal sealed class StderrLoggerFactory(StderrLoggerProvider provider) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => provider.CreateLogger(categoryName);

    public void AddProvider(ILoggerProvider provider) =>
        throw new NotSupportedException("the daemon logs to stderr only");

    public void Dispose() => provider.Dispose();
}
