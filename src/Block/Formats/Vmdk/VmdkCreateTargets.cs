using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Where a new image's files come from: index 0 is the descriptor (or the whole monolithic image),
/// 1… the extents of a split or flat image. qemu-img's way creates files named after the image;
/// blockdev-create's takes nodes it is given.
/// </summary>
internal interface IVmdkCreateTargets
{
    /// <summary>The node for file <paramref name="index"/>, empty and writable.</summary>
    ValueTask<BlockNode> GetAsync(int index);

    /// <summary>Whether a file <paramref name="index"/> was given that the image does not use.</summary>
    bool HasUnused(int index);

    ValueTask ReleaseAsync(BlockNode node);
}
