using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>
/// QAPI SchemaInfo (query-qmp-schema), flattened over its meta-types. Object members are kept as
/// JSON because an optional member is marked by a "default": null that must be written.
/// </summary>
internal sealed record SchemaInfo
{
    [JsonPropertyName("name")]
    public required string Name { get; init; }

    [JsonPropertyName("meta-type")]
    public required string MetaType { get; init; }

    [JsonPropertyName("arg-type")]
    public string? ArgType { get; init; }

    [JsonPropertyName("ret-type")]
    public string? RetType { get; init; }

    [JsonPropertyName("json-type")]
    public string? JsonType { get; init; }

    [JsonPropertyName("element-type")]
    public string? ElementType { get; init; }

    [JsonPropertyName("values")]
    public IReadOnlyList<string>? Values { get; init; }

    [JsonPropertyName("members")]
    public JsonArray? Members { get; init; }
}
