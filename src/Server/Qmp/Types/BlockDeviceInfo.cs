using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockDeviceInfo (query-named-block-nodes), with QEMU's mixed snake/kebab names.</summary>
internal sealed record BlockDeviceInfo
{
    [JsonPropertyName("file")]
    public required string File { get; init; }

    [JsonPropertyName("node-name")]
    public required string NodeName { get; init; }

    [JsonPropertyName("ro")]
    public bool ReadOnly { get; init; }

    [JsonPropertyName("drv")]
    public required string Driver { get; init; }

    [JsonPropertyName("backing_file")]
    public string? BackingFile { get; init; }

    [JsonPropertyName("backing_file_depth")]
    public int BackingFileDepth { get; init; }

    [JsonPropertyName("encrypted")]
    public bool Encrypted { get; init; }

    [JsonPropertyName("detect_zeroes")]
    public string DetectZeroes { get; init; } = "off";

    [JsonPropertyName("bps")]
    public long Bps { get; init; }

    [JsonPropertyName("bps_rd")]
    public long BpsRd { get; init; }

    [JsonPropertyName("bps_wr")]
    public long BpsWr { get; init; }

    [JsonPropertyName("iops")]
    public long Iops { get; init; }

    [JsonPropertyName("iops_rd")]
    public long IopsRd { get; init; }

    [JsonPropertyName("iops_wr")]
    public long IopsWr { get; init; }

    [JsonPropertyName("image")]
    public required ImageInfo Image { get; init; }

    [JsonPropertyName("cache")]
    public required BlockdevCacheInfo Cache { get; init; }

    [JsonPropertyName("write_threshold")]
    public long WriteThreshold { get; init; }

    [JsonPropertyName("dirty-bitmaps")]
    public List<BlockDirtyInfo>? DirtyBitmaps { get; init; }
}
