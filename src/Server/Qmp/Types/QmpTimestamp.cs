using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>An event's wall-clock time, split as QEMU splits it.</summary>
internal sealed record QmpTimestamp(
    [property: JsonPropertyName("seconds")] long Seconds,
    [property: JsonPropertyName("microseconds")] long Microseconds)
{
    public static QmpTimestamp Now()
    {
        var us = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks / 10;
        return new QmpTimestamp(us / 1_000_000, us % 1_000_000);
    }
}
