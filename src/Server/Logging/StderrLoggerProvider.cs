using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Logging;

/// <summary>
/// Writes log lines to stderr. Warnings and errors always; Debug/Trace only for categories
/// enabled with --trace (a pattern such as 'nbd*' or '*' matched against the subsystem name).
/// </summary>
internal sealed class StderrLoggerProvider : ILoggerProvider
{
    private readonly string[] _patterns;
    private readonly object _gate = new();

    public StderrLoggerProvider(IEnumerable<string> patterns)
    {
        _patterns = patterns.Select(p => p.StartsWith("enable=", StringComparison.Ordinal) ? p[7..] : p).ToArray();
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName, IsTraced(categoryName));

    private bool IsTraced(string category)
    {
        var subsystem = category.Split('.').Last().ToLowerInvariant();
        foreach (var p in _patterns)
        {
            var pattern = p.ToLowerInvariant();
            if (pattern == "*" || pattern == subsystem ||
                (pattern.EndsWith('*') && subsystem.StartsWith(pattern[..^1], StringComparison.Ordinal)))
            {
                return true;
            }
        }

        return false;
    }

    public void Dispose()
    {
    }

    private sealed class Logger(StderrLoggerProvider owner, string category, bool traced) : ILogger
    {
        private readonly string _name = category.Split('.').Last().ToLowerInvariant();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && (traced || logLevel >= LogLevel.Warning);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var line = $"export-server: {_name}: {formatter(state, exception)}";
            lock (owner._gate)
            {
                Console.Error.WriteLine(line);
            }
        }
    }
}
