using System.Text.Json.Nodes;

namespace ExportServer.Server.Cli;

/// <summary>One object-valued option as given (for error messages) and as a JSON tree.</summary>
internal sealed record CliOption(CliOptionKind Kind, string Name, string Text, JsonObject Value);
