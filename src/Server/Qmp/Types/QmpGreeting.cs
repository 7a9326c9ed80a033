using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>The first line a monitor sends to a new client.</summary>
internal sealed record QmpGreeting([property: JsonPropertyName("QMP")] QmpGreetingBody Qmp);
