using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>One command execution: its checked arguments and the monitor it came from.</summary>
internal sealed class QmpCall(JsonObject arguments, QmpSession? session)
{
    public JsonObject Arguments { get; } = arguments;

    public QmpSession? Session { get; } = session;

    /// <summary>Run after the reply has been written (quit closes the daemon only once the client has its answer).</summary>
    public Action? AfterReply { get; set; }

    public string? GetString(string name) => Arguments[name]?.GetValue<string>();

    public string RequireString(string name) => GetString(name) ?? throw new InvalidOperationException($"'{name}' was checked as required");

    public bool GetBool(string name, bool defaultValue) => Arguments[name]?.GetValue<bool>() ?? defaultValue;

    public long? GetInt(string name) => Arguments[name]?.GetValue<long>();
}
