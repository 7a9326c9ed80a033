using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The body of the greeting: version and the capabilities a client may enable.</summary>
internal sealed record QmpGreetingBody(
    [property: JsonPropertyName("version")] VersionInfo Version,
    [property: JsonPropertyName("capabilities")] string[] Capabilities);
