using System.Net;
using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Server;

/// <summary>Trace points of the NBD server. Per-request and per-option events are Debug, so the server is quiet by default.</summary>
internal static partial class NbdLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "nbd: listening on {EndPoint}")]
    public static partial void Listening(ILogger logger, EndPoint endPoint);

    [LoggerMessage(Level = LogLevel.Information, Message = "nbd: export '{Name}' added (node '{Node}', writable={Writable})")]
    public static partial void ExportAdded(ILogger logger, string name, string node, bool writable);

    [LoggerMessage(Level = LogLevel.Information, Message = "nbd: export '{Name}' removed (hard={Hard})")]
    public static partial void ExportRemoved(ILogger logger, string name, bool hard);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: connection from {Remote}")]
    public static partial void Accepted(ILogger logger, long id, string remote);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: TLS established ({Protocol}, {Cipher})")]
    public static partial void TlsEstablished(ILogger logger, long id, string protocol, string cipher);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: closed")]
    public static partial void Closed(ILogger logger, long id);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: opt={Option} ({OptionName}) length={Length}")]
    public static partial void Option(ILogger logger, long id, uint option, string optionName, uint length);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: opt={Option} ({OptionName}) -> {Reply}: {Message}")]
    public static partial void OptionRefused(ILogger logger, long id, uint option, string optionName, string reply, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: export '{Name}' selected, size={Size} flags=0x{Flags:x4} structured={Structured} extended={Extended}")]
    public static partial void ExportSelected(ILogger logger, long id, string name, long size, ushort flags, bool structured, bool extended);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: cmd={Command} ({CommandName}) flags=0x{Flags:x4} offset={Offset} length={Length} -> {Error}: {Message}")]
    public static partial void RequestFailed(ILogger logger, long id, ushort command, string commandName, ushort flags, ulong offset, ulong length, string error, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "nbd[{Id}]: client disconnected: {Reason}")]
    public static partial void Disconnected(ILogger logger, long id, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "nbd[{Id}]: protocol violation, closing connection: {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, long id, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "nbd[{Id}]: unexpected error, closing connection")]
    public static partial void ConnectionFailed(ILogger logger, long id, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "nbd[{Id}]: cmd={Command} ({CommandName}) failed unexpectedly")]
    public static partial void RequestCrashed(ILogger logger, long id, ushort command, string commandName, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "nbd: accepting on {EndPoint} failed")]
    public static partial void AcceptFailed(ILogger logger, EndPoint endPoint, Exception exception);
}
