using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>An asynchronous event as sent to every negotiated monitor.</summary>
internal sealed record QmpEventMessage(
    [property: JsonPropertyName("event")] string Event,
    [property: JsonPropertyName("data"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonObject? Data,
    [property: JsonPropertyName("timestamp")] QmpTimestamp Timestamp);
