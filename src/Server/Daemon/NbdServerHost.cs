using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;
using ExportServer.Nbd.Server;
using ExportServer.Nbd.Tls;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Daemon;

/// <summary>The daemon's one NBD server: --nbd-server, nbd-server-start and nbd-server-stop.</summary>
internal sealed class NbdServerHost : IAsyncDisposable
{
    private readonly BlockExportTable _exports;
    private readonly NamedObjects _objects;
    private readonly ILogger _log;

    public NbdServerHost(BlockExportTable exports, NamedObjects objects, ILogger log)
    {
        _exports = exports;
        _objects = objects;
        _log = log;
    }

    /// <summary>The running server, if any.</summary>
    public NbdServer? Server { get; private set; }

    /// <summary>nbd-server-start / --nbd-server.</summary>
    public void Start(JsonObject options)
    {
        var r = new OptionReader(options);
        var addr = r.GetObject("addr") ?? throw BlockException.Invalid("Parameter 'addr' is missing");
        var credsId = r.GetString("tls-creds");

        // Without tls-creds QEMU keeps tls-authz and never consults it; with them it names the
        // authorization object looked up for each client.
        var authz = r.GetString("tls-authz");
        var max = ReadUInt32(r, "max-connections") ?? NbdServerOptions.DefaultMaxConnections;
        var handshake = ReadUInt32(r, "handshake-max-seconds") ?? NbdServerOptions.DefaultHandshakeSeconds;
        var endpoints = SocketAddressParser.Parse(addr, out var keepAlive);
        r.EnsureAllConsumed();
        if (Server is not null)
        {
            throw BlockException.Invalid("NBD server already running");
        }

        var creds = credsId is null ? null : TlsCredentials.Find(_objects, credsId, TlsEndpoint.Server);
        var server = new NbdServer(
            new NbdServerOptions
            {
                EndPoints = endpoints,
                MaxConnections = (int)Math.Min(max, int.MaxValue),
                KeepAlive = keepAlive,
                HandshakeLimit = TimeSpan.FromSeconds(handshake),
                TlsCredentials = creds,
                TlsAuthz = creds is null ? null : authz,
                Objects = _objects,
            },
            _log);
        server.Start();
        creds?.AddUser();
        Server = server;
    }

    private static long? ReadUInt32(OptionReader r, string key)
    {
        var value = r.GetInt(key);
        return value is < 0 or > uint.MaxValue
            ? throw BlockException.Invalid($"Parameter '{key}' expects uint32")
            : value;
    }

    /// <summary>nbd-server-stop: removes every NBD export and closes the server.</summary>
    public async ValueTask StopAsync()
    {
        var server = Server ?? throw BlockException.Invalid("NBD server not running");
        await _exports.DeleteAllAsync(NbdExportType.TypeName).ConfigureAwait(false);
        Server = null;
        await CloseAsync(server).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Server is { } server)
        {
            Server = null;
            await CloseAsync(server).ConfigureAwait(false);
        }
    }

    /// <summary>Closes the server and every client still connected, then lets go of its credentials.</summary>
    private static async ValueTask CloseAsync(NbdServer server)
    {
        await server.DisposeAsync().ConfigureAwait(false);
        server.Options.TlsCredentials?.RemoveUser();
    }
}
