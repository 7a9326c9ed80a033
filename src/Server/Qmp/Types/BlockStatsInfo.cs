using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockStats (query-blockstats): a node's counters, with its file child's as "parent".</summary>
internal sealed record BlockStatsInfo
{
    [JsonPropertyName("node-name")]
    public string? NodeName { get; init; }

    [JsonPropertyName("stats")]
    public required BlockDeviceStats Stats { get; init; }

    [JsonPropertyName("parent")]
    public BlockStatsInfo? Parent { get; init; }

    [JsonPropertyName("backing")]
    public BlockStatsInfo? Backing { get; init; }
}
