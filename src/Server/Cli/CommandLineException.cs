namespace ExportServer.Server.Cli;

/// <summary>A command-line error, printed as "export-server: MESSAGE" with exit status 1.</summary>
internal sealed class CommandLineException(string message) : Exception(message);
