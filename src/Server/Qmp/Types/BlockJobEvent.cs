using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The data of BLOCK_JOB_READY, BLOCK_JOB_CANCELLED and BLOCK_JOB_COMPLETED (only that one has an error).</summary>
internal sealed record BlockJobEvent(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("len")] long Len,
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("speed")] long Speed,
    [property: JsonPropertyName("error")] string? Error);
