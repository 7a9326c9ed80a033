using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;
using ExportServer.Nbd.Server;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Daemon;

/// <summary>The daemon's one NBD server: --nbd-server, nbd-server-start and nbd-server-stop.</summary>
internal sealed class NbdServerHost : IAsyncDisposable
{
    private readonly BlockExportTable _exports;
    private readonly ILogger _log;

    public NbdServerHost(BlockExportTable exports, ILogger log)
    {
        _exports = exports;
        _log = log;
    }

    /// <summary>The running server, if any.</summary>
    public NbdServer? Server { get; private set; }

    /// <summary>nbd-server-start / --nbd-server.</summary>
    public void Start(JsonObject options)
    {
        var r = new OptionReader(options);
        var addr = r.GetObject("addr") ?? throw BlockException.Invalid("Parameter 'addr' is missing");
        if (r.GetString("tls-creds") is { } creds)
        {
            throw BlockException.NotSupported($"No TLS credentials with id '{creds}'");
        }

        // Without tls-creds (which are refused above) QEMU keeps tls-authz and never consults it.
        r.GetString("tls-authz");
        var max = r.GetInt("max-connections") ?? 0;
        if (max < 0 || max > int.MaxValue)
        {
            throw BlockException.Invalid("Parameter 'max-connections' expects uint32");
        }

        var endpoints = SocketAddressParser.Parse(addr);
        r.EnsureAllConsumed();
        if (Server is not null)
        {
            throw BlockException.Invalid("NBD server already running");
        }

        var server = new NbdServer(new NbdServerOptions { EndPoints = endpoints, MaxConnections = (int)max }, _log);
        server.Start();
        Server = server;
    }

    /// <summary>nbd-server-stop: removes every NBD export and closes the server.</summary>
    public async ValueTask StopAsync()
    {
        var server = Server ?? throw BlockException.Invalid("NBD server not running");
        await _exports.DeleteAllAsync(NbdExportType.TypeName).ConfigureAwait(false);
        Server = null;
        await server.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Server is { } server)
        {
            Server = null;
            await server.DisposeAsync().ConfigureAwait(false);
        }
    }
}
