namespace ExportServer.Block.Core;

/// <summary>Opt-in for formats that keep snapshots inside the image (qcow2).</summary>
public interface IInternalSnapshots
{
    IReadOnlyList<InternalSnapshotInfo> ListSnapshots();

    /// <summary>Takes a snapshot of the current state under <paramref name="name"/>; the id is assigned by the format.</summary>
    ValueTask<InternalSnapshotInfo> CreateSnapshotAsync(string name);

    /// <summary>Deletes the snapshot that matches both given keys (either may be null, not both).</summary>
    ValueTask<InternalSnapshotInfo> DeleteSnapshotAsync(string? id, string? name);
}
