using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockJobInfo (query-block-jobs).</summary>
internal sealed record BlockJobInfo(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("len")] long Len,
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("busy")] bool Busy,
    [property: JsonPropertyName("paused")] bool Paused,
    [property: JsonPropertyName("speed")] long Speed,
    [property: JsonPropertyName("io-status")] string IoStatus,
    [property: JsonPropertyName("ready")] bool Ready,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("auto-finalize")] bool AutoFinalize,
    [property: JsonPropertyName("auto-dismiss")] bool AutoDismiss,
    [property: JsonPropertyName("error")] string? Error);
