using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI VersionTriple.</summary>
internal sealed record VersionTriple(
    [property: JsonPropertyName("micro")] int Micro,
    [property: JsonPropertyName("minor")] int Minor,
    [property: JsonPropertyName("major")] int Major);
