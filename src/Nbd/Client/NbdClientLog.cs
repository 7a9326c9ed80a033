using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Client;

/// <summary>Trace points of the NBD client driver; quiet unless a connection is lost or comes back.</summary>
internal static partial class NbdClientLog
{
    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd-client[{Node}]: connected to {Server}, size={Size} flags=0x{Flags:x4} structured={Structured} extended={Extended} base:allocation={BlockStatus}")]
    public static partial void Connected(ILogger logger, string node, string server, ulong size, ushort flags, bool structured, bool extended, bool blockStatus);

    [LoggerMessage(Level = LogLevel.Warning, Message = "nbd-client[{Node}]: connection to {Server} lost, reconnecting")]
    public static partial void ConnectionLost(ILogger logger, string node, string server);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd-client[{Node}]: reconnect attempt failed: {Reason}")]
    public static partial void ReconnectFailed(ILogger logger, string node, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "nbd-client[{Node}]: reconnected to {Server}")]
    public static partial void Reconnected(ILogger logger, string node, string server);

    [LoggerMessage(Level = LogLevel.Warning, Message = "nbd-client[{Node}]: {Opened} of {Wanted} connections opened: {Reason}")]
    public static partial void FewerConnections(ILogger logger, string node, int opened, int wanted, string reason);
}
