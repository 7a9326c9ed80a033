using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI ImageInfo: one layer of a node's image chain.</summary>
internal sealed record ImageInfo
{
    [JsonPropertyName("filename")]
    public required string Filename { get; init; }

    [JsonPropertyName("format")]
    public required string Format { get; init; }

    [JsonPropertyName("virtual-size")]
    public long VirtualSize { get; init; }

    [JsonPropertyName("actual-size")]
    public long? ActualSize { get; init; }

    [JsonPropertyName("cluster-size")]
    public long? ClusterSize { get; init; }

    [JsonPropertyName("encrypted")]
    public bool? Encrypted { get; init; }

    [JsonPropertyName("dirty-flag")]
    public bool? DirtyFlag { get; init; }

    [JsonPropertyName("format-specific")]
    public ImageInfoSpecific? FormatSpecific { get; init; }

    [JsonPropertyName("backing-filename")]
    public string? BackingFilename { get; init; }

    [JsonPropertyName("full-backing-filename")]
    public string? FullBackingFilename { get; init; }

    [JsonPropertyName("backing-filename-format")]
    public string? BackingFilenameFormat { get; init; }

    [JsonPropertyName("snapshots")]
    public IReadOnlyList<SnapshotInfo>? Snapshots { get; init; }

    [JsonPropertyName("backing-image")]
    public ImageInfo? BackingImage { get; init; }
}
