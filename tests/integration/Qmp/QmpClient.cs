using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>A plain QMP client over a unix socket: JSON lines out, replies and events in.</summary>
internal sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly NetworkStream _stream;

    private QmpClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, Encoding.UTF8);
    }

    public JsonObject Greeting { get; private set; } = new();

    /// <summary>Events received while waiting for replies, in order.</summary>
    public List<JsonObject> Events { get; } = new();

    /// <summary>Every event received, in order; unlike <see cref="Events"/>, waiting for one does not take it out.</summary>
    public List<JsonObject> EventLog { get; } = new();

    /// <summary>Connects (retrying while the socket appears) and reads the greeting; negotiates unless told not to.</summary>
    public static async Task<QmpClient> ConnectAsync(string path, bool negotiate = true)
    {
        for (var i = 0; ; i++)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await s.ConnectAsync(new UnixDomainSocketEndPoint(path));
                var c = new QmpClient(s);
                c.Greeting = await c.ReadAsync();
                if (negotiate)
                {
                    await c.ExecuteAsync("qmp_capabilities");
                }

                return c;
            }
            catch (SocketException) when (i < 50)
            {
                s.Dispose();
                await Task.Delay(100);
            }
        }
    }

    public async Task<JsonObject> ReadAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var line = await _reader.ReadLineAsync(cts.Token) ?? throw new EndOfStreamException("monitor closed");
        var message = (JsonObject)JsonNode.Parse(line)!;
        if (message.ContainsKey("event"))
        {
            EventLog.Add(message);
        }

        return message;
    }

    /// <summary>Sends raw text and returns the next reply (events before it are collected).</summary>
    public async Task<JsonObject> SendRawAsync(string text)
    {
        await _stream.WriteAsync(Encoding.UTF8.GetBytes(text + "\n"));
        while (true)
        {
            var m = await ReadAsync();
            if (m.ContainsKey("event"))
            {
                Events.Add(m);
                continue;
            }

            return m;
        }
    }

    public Task<JsonObject> SendAsync(string command, JsonObject? arguments = null)
    {
        var request = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            request["arguments"] = arguments;
        }

        return SendRawAsync(request.ToJsonString());
    }

    /// <summary>Writes raw bytes (of any validity) without waiting for a reply.</summary>
    public async Task WriteAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    /// <summary>Runs a command that must succeed; returns its "return" value.</summary>
    public async Task<JsonNode> ExecuteAsync(string command, JsonObject? arguments = null)
    {
        var reply = await SendAsync(command, arguments);
        return reply["return"] ?? throw new InvalidOperationException($"{command} failed: {reply.ToJsonString()}");
    }

    /// <summary>Runs a command that must fail; returns the error's class and description.</summary>
    public async Task<(string Class, string Desc)> ErrorAsync(string command, JsonObject? arguments = null)
    {
        var reply = await SendAsync(command, arguments);
        var e = reply["error"] ?? throw new InvalidOperationException($"{command} succeeded: {reply.ToJsonString()}");
        return (e["class"]!.GetValue<string>(), e["desc"]!.GetValue<string>());
    }

    /// <summary>Reads until an event named <paramref name="name"/> arrives (or was already collected).</summary>
    public async Task<JsonObject> WaitEventAsync(string name, Func<JsonObject, bool>? match = null)
    {
        while (true)
        {
            var seen = Events.FirstOrDefault(e => e["event"]!.GetValue<string>() == name && (match?.Invoke(e) ?? true));
            if (seen is not null)
            {
                Events.Remove(seen);
                return seen;
            }

            Events.Add(await ReadAsync());
        }
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
