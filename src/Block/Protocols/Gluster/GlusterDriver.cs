using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Gluster;

/// <summary>
/// QEMU's gluster driver: a file on a GlusterFS volume through libgfapi, opened from
/// BlockdevOptionsGluster (volume, path, server list of inet or unix addresses, debug, logfile) or
/// a <c>gluster[+tcp|+unix]://[host[:port]]/volume/path[?socket=…]</c> file name. Connecting
/// fetches the volume's layout from a server and blocks, so it runs on the thread pool.
/// </summary>
internal sealed class GlusterDriver : IBlockDriver, IProtocolFileNames, ILocationCreator
{
    public const int DefaultPort = 24007;
    public const int DefaultDebug = 4;
    public const int MaxDebug = 9;

    public static GlusterDriver Instance { get; } = new();

    public string Name => "gluster";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var location = ReadLocation(options);
        options.EnsureAllConsumed();
        return await Task.Run(() => GlusterNode.Open(context, location)).ConfigureAwait(false);
    }

    /// <summary>
    /// BlockdevCreateOptionsGluster: location, size, preallocation (off, falloc, full). As QEMU's,
    /// creates or truncates the file, then sizes it: "off" truncates (sparse), "falloc" allocates
    /// the range, "full" truncates and writes zeroes over it on the bricks (zerofill).
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var locationOptions = options.GetObject("location") ?? throw BlockException.Invalid($"Parameter '{options.FullName("location")}' is missing");
        var size = options.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{options.FullName("size")}' is missing");
        var prealloc = options.GetString("preallocation") ?? "off";
        var location = ReadLocation(locationOptions);
        locationOptions.EnsureAllConsumed();
        options.EnsureAllConsumed();
        if (prealloc is not ("off" or "falloc" or "full"))
        {
            throw BlockException.Invalid($"Unsupported preallocation mode: {prealloc}");
        }

        await Task.Run(() => GlusterNode.Create(location, size, prealloc)).ConfigureAwait(false);
    }

    /// <summary>BlockdevOptionsGluster: volume, path, server, debug (clamped to 0..9 as QEMU does), logfile.</summary>
    private static GlusterLocation ReadLocation(OptionReader options)
    {
        var volume = options.RequireString("volume");
        var path = options.RequireString("path");
        var servers = ReadServers(options);
        var debug = (int)Math.Clamp(options.GetInt("debug") ?? DefaultDebug, 0, MaxDebug);
        var logFile = options.GetString("logfile") ?? "-";
        return new GlusterLocation(volume, path, servers, debug, logFile);
    }

    /// <summary>The server list: SocketAddress items of type inet (host, port) or unix (path).</summary>
    private static List<(string Transport, string Host, int Port)> ReadServers(OptionReader options)
    {
        var key = options.FullName("server");
        if (options.Raw("server") is not JsonArray array || array.Count == 0)
        {
            throw BlockException.Invalid($"Parameter '{key}' is missing");
        }

        var servers = new List<(string, string, int)>();
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject o)
            {
                throw BlockException.Invalid($"Invalid parameter type for '{key}[{i}]', expected: object");
            }

            var server = new OptionReader(o, $"{key}[{i}].");
            switch (server.RequireString("type"))
            {
                case "inet":
                    var host = server.RequireString("host");
                    var portText = server.GetString("port") ?? DefaultPort.ToString(CultureInfo.InvariantCulture);
                    if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
                    {
                        throw BlockException.Invalid($"'{portText}' is not a valid port number");
                    }

                    servers.Add(("tcp", host, port));
                    break;
                case "unix":
                    servers.Add(("unix", server.RequireString("path"), 0));
                    break;
                case var t:
                    throw BlockException.Invalid($"Parameter '{key}[{i}].type' does not accept value '{t}'");
            }

            server.EnsureAllConsumed();
        }

        return servers;
    }

    public JsonObject? ParseFileName(string fileName) =>
        fileName.StartsWith("gluster", StringComparison.Ordinal) && fileName.Contains("://", StringComparison.Ordinal)
            ? GlusterFileName.Parse(fileName)
            : null;
}

/// <summary>Where a gluster node's file is: the volume, the path in it, the servers to ask for its layout, and libgfapi's logging.</summary>
internal sealed record GlusterLocation(string Volume, string Path,
    IReadOnlyList<(string Transport, string Host, int Port)> Servers, int Debug, string LogFile);
