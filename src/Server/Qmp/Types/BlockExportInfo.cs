using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockExportInfo (query-block-exports).</summary>
internal sealed record BlockExportInfo(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("node-name")] string NodeName,
    [property: JsonPropertyName("shutting-down")] bool ShuttingDown);
