using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server bitmap-rotate --qmp SOCKET --current NAME --new NAME [--merge NAME]... NODE...</c>:
/// asks a running daemon, through its QMP socket, to rotate the checkpoint bitmaps of the nodes
/// at once (x-block-dirty-bitmap-rotate). Exits 0 when the daemon did it, else prints its error.
/// </summary>
internal static class BitmapRotateCommand
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(30);

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter stderr, string program)
    {
        string? socket = null;
        string? current = null;
        string? next = null;
        var merge = new JsonArray();
        var nodes = new JsonArray();
        try
        {
            for (var i = 0; i < args.Count; i++)
            {
                string Value() => i + 1 < args.Count ? args[++i] : throw new CommandLineException($"option '{args[i]}' requires an argument");
                switch (args[i])
                {
                    case "--qmp": socket = Value(); break;
                    case "--current": current = Value(); break;
                    case "--new": next = Value(); break;
                    case "--merge": merge.Add((JsonNode)Value()); break;
                    default:
                        if (args[i].StartsWith('-'))
                        {
                            throw new CommandLineException($"unrecognized option '{args[i]}'");
                        }

                        nodes.Add((JsonNode)args[i]);
                        break;
                }
            }

            if (socket is null || current is null || next is null || nodes.Count == 0)
            {
                throw new CommandLineException("usage: bitmap-rotate --qmp SOCKET --current NAME --new NAME [--merge NAME]... NODE...");
            }
        }
        catch (CommandLineException e)
        {
            await stderr.WriteLineAsync($"{program}: {e.Message}").ConfigureAwait(false);
            return 1;
        }

        var arguments = new JsonObject { ["nodes"] = nodes, ["current"] = current, ["new"] = next };
        if (merge.Count > 0)
        {
            arguments["merge"] = merge;
        }

        try
        {
            // A monitor serves one client at a time: while another is connected, this one is never greeted.
            var reply = await ExecuteAsync(socket, "x-block-dirty-bitmap-rotate", arguments).WaitAsync(ReplyTimeout).ConfigureAwait(false);
            if (reply["error"] is JsonObject error)
            {
                await stderr.WriteLineAsync($"{program}: {error["desc"]?.GetValue<string>()}").ConfigureAwait(false);
                return 1;
            }

            return 0;
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidDataException)
        {
            await stderr.WriteLineAsync($"{program}: {socket}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (TimeoutException)
        {
            await stderr.WriteLineAsync($"{program}: {socket}: no reply within {ReplyTimeout.TotalSeconds} s (is another client connected to this monitor?)").ConfigureAwait(false);
            return 1;
        }
    }

    /// <summary>One command on a QMP socket: the greeting, qmp_capabilities, the command; events in between are skipped.</summary>
    private static async Task<JsonObject> ExecuteAsync(string path, string command, JsonObject arguments)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path)).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        if ((await ReadAsync(reader).ConfigureAwait(false))["QMP"] is null)
        {
            throw new InvalidDataException("not a QMP monitor");
        }

        await writer.WriteLineAsync("""{"execute":"qmp_capabilities"}""").ConfigureAwait(false);
        await ReplyAsync(reader).ConfigureAwait(false);
        await writer.WriteLineAsync(new JsonObject { ["execute"] = command, ["arguments"] = arguments }.ToJsonString()).ConfigureAwait(false);
        return await ReplyAsync(reader).ConfigureAwait(false);
    }

    private static async Task<JsonObject> ReplyAsync(StreamReader reader)
    {
        while (true)
        {
            var message = await ReadAsync(reader).ConfigureAwait(false);
            if (message["event"] is null)
            {
                return message;
            }
        }
    }

    private static async Task<JsonObject> ReadAsync(StreamReader reader)
    {
        var line = await reader.ReadLineAsync().ConfigureAwait(false) ?? throw new IOException("the monitor closed the connection");
        return JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException("not a QMP message");
    }
}
