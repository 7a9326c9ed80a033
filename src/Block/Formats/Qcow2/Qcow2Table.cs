namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// One cluster-sized metadata table (an L2 table or a refcount block) held by a <see cref="Qcow2TableCache"/>.
/// The data is modified only under the node's metadata lock; readers may look at it at any time
/// (8-byte entries are written whole, so a reader sees the old or the new entry).
/// </summary>
internal sealed class Qcow2Table(long offset, byte[] data)
{
    public long Offset { get; } = offset;

    public byte[] Data { get; } = data;

    /// <summary>Completed once <see cref="Data"/> holds the table's contents.</summary>
    public Task Loaded { get; set; } = Task.CompletedTask;

    public bool Dirty { get; set; }

    /// <summary>Cleared by the clean timer, set by every use; unused clean tables are dropped.</summary>
    public bool Used { get; set; } = true;
}
