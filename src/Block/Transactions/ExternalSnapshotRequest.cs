namespace ExportServer.Block.Transactions;

/// <summary>
/// An external snapshot of the node named by <see cref="Device"/> or <see cref="NodeName"/>:
/// onto an overlay node opened before (blockdev-snapshot's <see cref="Overlay"/>), or onto
/// <see cref="SnapshotFile"/>, created unless <see cref="ExistingFile"/> and opened as a
/// <see cref="Format"/> node (blockdev-snapshot-sync).
/// </summary>
public sealed record ExternalSnapshotRequest(string? Device, string? NodeName)
{
    public string? Overlay { get; init; }

    public string? SnapshotFile { get; init; }

    public string? SnapshotNodeName { get; init; }

    public string? Format { get; init; }

    public bool ExistingFile { get; init; }
}
