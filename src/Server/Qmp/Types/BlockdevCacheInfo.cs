using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI BlockdevCacheInfo.</summary>
internal sealed record BlockdevCacheInfo(
    [property: JsonPropertyName("writeback")] bool Writeback,
    [property: JsonPropertyName("direct")] bool Direct,
    [property: JsonPropertyName("no-flush")] bool NoFlush);
