using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The data of BLOCK_JOB_ERROR.</summary>
internal sealed record BlockJobErrorEvent(
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("operation")] string Operation,
    [property: JsonPropertyName("action")] string Action);
