using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The data of JOB_STATUS_CHANGE.</summary>
internal sealed record JobStatusChangeEvent(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("id")] string Id);
