using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Nbd.Protocol;
using ExportServer.Nbd.Tls;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ExportServer.Nbd.Client;

/// <summary>
/// QEMU's driver=nbd with the options of BlockdevOptionsNbd: server (SocketAddress), export,
/// reconnect-delay and open-timeout (seconds), tls-creds and tls-hostname. x-dirty-bitmap is refused.
/// Beyond QEMU, multi-conn: how many connections the node opens to an export whose server advertises
/// NBD_FLAG_CAN_MULTI_CONN (NbdDriver.MultiConn.cs).
/// </summary>
public sealed partial class NbdDriver : IBlockDriver
{
    private readonly ILogger _log;

    public NbdDriver(ILogger? logger = null)
    {
        _log = logger ?? NullLogger.Instance;
    }

    public string Name => "nbd";

    /// <summary>Makes driver=nbd available in <paramref name="graph"/>.</summary>
    public static void Register(BlockGraph graph) => graph.Register(new NbdDriver());

    /// <summary>Makes driver=nbd available in <paramref name="graph"/>, tracing to <paramref name="logger"/>.</summary>
    public static void Register(BlockGraph graph, ILogger logger) => graph.Register(new NbdDriver(logger));

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var server = options.GetObject("server") ?? throw BlockException.Invalid($"Parameter '{options.FullName("server")}' is missing");
        var address = NbdServerAddress.Read(server);
        var export = options.GetString("export") ?? string.Empty;
        var credsId = options.GetString("tls-creds");
        var hostName = options.GetString("tls-hostname");
        if (options.GetString("x-dirty-bitmap") is not null)
        {
            throw BlockException.NotSupported($"Parameter '{options.FullName("x-dirty-bitmap")}' is not supported");
        }

        var multiConn = ReadMultiConn(options);
        var reconnectDelay = TimeSpan.FromSeconds(ReadSeconds(options, "reconnect-delay"));
        var openTimeout = TimeSpan.FromSeconds(ReadSeconds(options, "open-timeout"));
        if (credsId is not null)
        {
            var creds = TlsCredentials.Find(context.Graph.Objects, credsId, TlsEndpoint.Client);
            address = address with { Tls = new NbdClientTls(creds, hostName ?? address.Host) };
        }

        var client = await NbdNode.ConnectAsync(address, export, openTimeout, CancellationToken.None).ConfigureAwait(false);
        var info = client.Info;
        NbdClientLog.Connected(_log, context.NodeName, address.FileName(export), info.Size, info.Flags,
            info.StructuredReplies, info.ExtendedHeaders, info.BaseAllocationId is not null);
        var readOnly = context.ReadOnly;
        if (info.Has(NbdConstants.FlagReadOnly) && !readOnly)
        {
            if (!context.AutoReadOnly)
            {
                await client.DisposeAsync().ConfigureAwait(false);

                // QEMU 7.2's NBD open loses its own message ("NBD export is read-only") and reports the errno.
                throw new BlockException(Errno.EACCES, "Could not open image: Permission denied");
            }

            readOnly = true;
        }

        var clients = await ConnectMoreAsync(context.NodeName, address, export, client, multiConn, options.FullName(MultiConnKey)).ConfigureAwait(false);
        address.Tls?.Credentials.AddUser();
        return new NbdNode(context.NodeName, readOnly, address, export, reconnectDelay, clients, _log);
    }

    private static long ReadSeconds(OptionReader options, string key)
    {
        var seconds = options.GetInt(key) ?? 0;
        return seconds is >= 0 and <= uint.MaxValue
            ? seconds
            : throw BlockException.Invalid($"Parameter '{options.FullName(key)}' expects uint32");
    }
}
