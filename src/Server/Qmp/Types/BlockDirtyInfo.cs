using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockDirtyInfo, in the order QEMU writes it; inconsistent only shown when set, name absent for an anonymous bitmap.</summary>
internal sealed record BlockDirtyInfo
{
    [JsonPropertyName("name")]
    public string? Name { get; init; }

    [JsonPropertyName("recording")]
    public bool Recording { get; init; }

    [JsonPropertyName("persistent")]
    public bool Persistent { get; init; }

    [JsonPropertyName("busy")]
    public bool Busy { get; init; }

    [JsonPropertyName("granularity")]
    public long Granularity { get; init; }

    [JsonPropertyName("count")]
    public long Count { get; init; }

    [JsonPropertyName("inconsistent")]
    public bool? Inconsistent { get; init; }
}
