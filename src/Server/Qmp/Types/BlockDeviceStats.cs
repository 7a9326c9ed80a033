using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockDeviceStats: the counters we keep; timing members are reported as zero.</summary>
internal sealed record BlockDeviceStats
{
    [JsonPropertyName("rd_bytes")] public long RdBytes { get; init; }
    [JsonPropertyName("wr_bytes")] public long WrBytes { get; init; }
    [JsonPropertyName("unmap_bytes")] public long UnmapBytes { get; init; }
    [JsonPropertyName("rd_operations")] public long RdOperations { get; init; }
    [JsonPropertyName("wr_operations")] public long WrOperations { get; init; }
    [JsonPropertyName("flush_operations")] public long FlushOperations { get; init; }
    [JsonPropertyName("unmap_operations")] public long UnmapOperations { get; init; }
    [JsonPropertyName("rd_total_time_ns")] public long RdTotalTimeNs { get; init; }
    [JsonPropertyName("wr_total_time_ns")] public long WrTotalTimeNs { get; init; }
    [JsonPropertyName("flush_total_time_ns")] public long FlushTotalTimeNs { get; init; }
    [JsonPropertyName("unmap_total_time_ns")] public long UnmapTotalTimeNs { get; init; }
    [JsonPropertyName("wr_highest_offset")] public long WrHighestOffset { get; init; }
    [JsonPropertyName("rd_merged")] public long RdMerged { get; init; }
    [JsonPropertyName("wr_merged")] public long WrMerged { get; init; }
    [JsonPropertyName("unmap_merged")] public long UnmapMerged { get; init; }
    [JsonPropertyName("failed_rd_operations")] public long FailedRdOperations { get; init; }
    [JsonPropertyName("failed_wr_operations")] public long FailedWrOperations { get; init; }
    [JsonPropertyName("failed_flush_operations")] public long FailedFlushOperations { get; init; }
    [JsonPropertyName("failed_unmap_operations")] public long FailedUnmapOperations { get; init; }
    [JsonPropertyName("invalid_rd_operations")] public long InvalidRdOperations { get; init; }
    [JsonPropertyName("invalid_wr_operations")] public long InvalidWrOperations { get; init; }
    [JsonPropertyName("invalid_flush_operations")] public long InvalidFlushOperations { get; init; }
    [JsonPropertyName("invalid_unmap_operations")] public long InvalidUnmapOperations { get; init; }
    [JsonPropertyName("account_invalid")] public bool AccountInvalid { get; init; }
    [JsonPropertyName("account_failed")] public bool AccountFailed { get; init; }
    [JsonPropertyName("timed_stats")] public IReadOnlyList<string> TimedStats { get; init; } = [];
}
