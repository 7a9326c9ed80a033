using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI CommandInfo (query-commands).</summary>
internal sealed record CommandInfo([property: JsonPropertyName("name")] string Name);
