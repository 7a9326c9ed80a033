using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI JobInfo (query-jobs).</summary>
internal sealed record JobInfo(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("current-progress")] long CurrentProgress,
    [property: JsonPropertyName("total-progress")] long TotalProgress,
    [property: JsonPropertyName("error")] string? Error);
