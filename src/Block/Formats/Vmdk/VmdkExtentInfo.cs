using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>QAPI VmdkExtentInfo: an extent's file, type and size; the grain size for sparse extents, compressed only when true.</summary>
internal sealed record VmdkExtentInfo
{
    [JsonPropertyName("filename")]
    public required string FileName { get; init; }

    [JsonPropertyName("format")]
    public required string Format { get; init; }

    [JsonPropertyName("virtual-size")]
    public required long VirtualSize { get; init; }

    [JsonPropertyName("cluster-size")]
    public long? ClusterSize { get; init; }

    [JsonPropertyName("compressed")]
    public bool? Compressed { get; init; }
}
