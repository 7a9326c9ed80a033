using System.Text.Json.Nodes;
using ExportServer.Server.Commands;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace ExportServer.UnitTests.Qmp;

/// <summary>A daemon with the test drivers and the full command table, driven without sockets.</summary>
internal sealed class QmpHarness : IAsyncDisposable
{
    public QmpHarness()
    {
        Daemon = new StorageDaemon(NullLoggerFactory.Instance);
        Daemon.Graph.Register(new TestDriver("memory"));
        Daemon.Graph.Register(new TestDriver("overlay"));
        Dispatcher = new QmpDispatcher(NullLogger.Instance);
        CommandTable.Register(Dispatcher, Daemon);
        Daemon.EventSink = (name, data) =>
        {
            lock (Events)
            {
                Events.Add((name, data));
            }
        };
    }

    public StorageDaemon Daemon { get; }

    public QmpDispatcher Dispatcher { get; }

    public List<(string Name, JsonObject? Data)> Events { get; } = new();

    /// <summary>Sends one request (JSON text) and returns the reply object.</summary>
    public async Task<JsonObject> SendAsync(string json)
    {
        var reply = await Dispatcher.DispatchAsync(QmpJsonStreamer.ParseOne(json), null);
        return reply.ToJson();
    }

    public async Task<JsonNode> OkAsync(string command, string arguments = "{}")
    {
        var reply = await SendAsync($$"""{"execute":"{{command}}","arguments":{{arguments}}}""");
        Assert.True(reply.ContainsKey("return"), reply.ToJsonString());
        return reply["return"]!;
    }

    /// <summary>Sends a command that must fail; returns (class, desc).</summary>
    public async Task<(string Class, string Desc)> FailAsync(string command, string arguments = "{}")
    {
        var reply = await SendAsync($$"""{"execute":"{{command}}","arguments":{{arguments}}}""");
        Assert.True(reply.ContainsKey("error"), reply.ToJsonString());
        return (reply["error"]!["class"]!.GetValue<string>(), reply["error"]!["desc"]!.GetValue<string>());
    }

    public ValueTask DisposeAsync() => Daemon.DisposeAsync();
}
