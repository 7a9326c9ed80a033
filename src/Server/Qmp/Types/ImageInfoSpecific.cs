using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI ImageInfoSpecific: a union by format; the data record comes from the format's driver, already in QEMU's shape.</summary>
internal sealed record ImageInfoSpecific(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("data")] JsonNode Data);
