using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>QAPI ImageInfoSpecificVmdk: the create type, both CIDs and one record per extent.</summary>
internal sealed record VmdkSpecificInfo
{
    [JsonPropertyName("create-type")]
    public required string CreateType { get; init; }

    [JsonPropertyName("cid")]
    public required long Cid { get; init; }

    [JsonPropertyName("parent-cid")]
    public required long ParentCid { get; init; }

    [JsonPropertyName("extents")]
    public required IReadOnlyList<VmdkExtentInfo> Extents { get; init; }
}
