using System.Text.Json.Serialization;

namespace ExportServer.Server.Qmp.Types;

/// <summary>QAPI SnapshotInfo (internal snapshots; blockdev-snapshot-internal-sync's delete answer).</summary>
internal sealed record SnapshotInfo(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("vm-state-size")] long VmStateSize,
    [property: JsonPropertyName("date-sec")] long DateSec,
    [property: JsonPropertyName("date-nsec")] long DateNsec,
    [property: JsonPropertyName("vm-clock-sec")] long VmClockSec,
    [property: JsonPropertyName("vm-clock-nsec")] long VmClockNsec);
