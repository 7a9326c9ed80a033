using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI VersionInfo (query-version and the greeting): the QEMU release we are compatible with.</summary>
internal sealed record VersionInfo(
    [property: JsonPropertyName("qemu")] VersionTriple Qemu,
    [property: JsonPropertyName("package")] string Package)
{
    public static VersionInfo Current { get; } = new(new VersionTriple(0, 2, 7), "export-server");
}
