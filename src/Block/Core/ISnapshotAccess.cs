namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for nodes that keep a point-in-time view of their child (the copy-before-write filter),
/// read through a snapshot-access node. Requests are in bytes within the node's length.
/// </summary>
public interface ISnapshotAccess
{
    /// <summary>Reads the point-in-time data; EACCES for a range the view no longer holds.</summary>
    ValueTask ReadSnapshotAsync(long offset, Memory<byte> buffer);

    /// <summary>The block status of the point-in-time data from <paramref name="offset"/>.</summary>
    ValueTask<BlockStatus> GetSnapshotBlockStatusAsync(long offset, long length);

    /// <summary>Gives up the whole clusters inside the range: no longer kept, read or copied.</summary>
    ValueTask DiscardSnapshotAsync(long offset, long length);
}
