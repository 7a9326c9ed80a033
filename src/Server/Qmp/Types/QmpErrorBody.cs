using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The "error" member of a failed command's reply.</summary>
internal sealed record QmpErrorBody(
    [property: JsonPropertyName("class")] string Class,
    [property: JsonPropertyName("desc")] string Desc);
