using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse;

/// <summary>Trace points of the FUSE export.</summary>
internal static partial class FuseLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "fuse export '{Id}': node '{Node}' mounted on {MountPoint} (writable={Writable}, growable={Growable}, allow_other={AllowOther})")]
    public static partial void Mounted(ILogger logger, string id, string node, string mountPoint, bool writable, bool growable, bool allowOther);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "fuse export '{Id}': unmounted {MountPoint}")]
    public static partial void Unmounted(ILogger logger, string id, string mountPoint);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "fuse {Operation} on node '{Node}' failed: errno={Errno}: {Reason}")]
    public static partial void RequestFailed(ILogger logger, string operation, string node, int errno, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "libfuse: {Message}")]
    public static partial void LibFuseMessage(ILogger logger, string message);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "fuse export '{Id}': mounting with allow_other failed ({Reason}); mounting without it")]
    public static partial void AllowOtherFallback(ILogger logger, string id, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "fuse export '{Id}': {MountPoint} still in use after unmount; aborting FUSE connection {Connection}")]
    public static partial void AbortingConnection(ILogger logger, string id, string mountPoint, string connection);

    [LoggerMessage(EventId = 7, Level = LogLevel.Error, Message = "fuse export '{Id}': receive loop ended: errno={Errno}")]
    public static partial void ReceiveFailed(ILogger logger, string id, int errno);
}
