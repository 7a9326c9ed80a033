namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in: a node that can say where some of its bytes lie unchanged in a regular file (the file
/// driver without direct I/O, and raw over it). Called through <see cref="BlockNode.TryLeaseFileExtent"/>,
/// which has checked the range.
/// </summary>
public interface IFileExtentSource
{
    /// <summary>The file extent holding [offset, offset+length) of this node, leased; false when these bytes are not in one.</summary>
    bool TryLeaseExtent(long offset, int length, out FileExtent extent);
}
