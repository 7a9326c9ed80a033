using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Client;

/// <summary>What every connection of one nbd node shares: where to connect, the export and its size, and how to reconnect.</summary>
internal sealed record NbdRemote(
    string NodeName,
    NbdServerAddress Address,
    string Export,
    string FileName,
    ulong Size,
    TimeSpan ReconnectDelay,
    ILogger Log);
