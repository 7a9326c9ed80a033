using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>One top-level JSON value read from a monitor (null for JSON null), or the error found instead.</summary>
internal readonly record struct QmpInput(JsonNode? Value, string? Error);
