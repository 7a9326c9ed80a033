namespace ExportServer.Server.Cli;

/// <summary>
/// A command-line error, printed as "export-server: MESSAGE" with exit status 1; option-syntax
/// errors (<see cref="FromGetopt"/>) start with the program path instead, as getopt's do.
/// </summary>
internal sealed class CommandLineException(string message, bool fromGetopt = false) : Exception(message)
{
    public bool FromGetopt { get; } = fromGetopt;
}
