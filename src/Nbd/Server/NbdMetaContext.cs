using ExportServer.Block.Core;

namespace ExportServer.Nbd.Server;

/// <summary>
/// A metadata context an export offers to BLOCK_STATUS ("namespace:leaf"). Each context answers
/// for a prefix of a range with one 32-bit status value; new contexts (dirty bitmaps) subclass this.
/// </summary>
internal abstract class NbdMetaContext(string name)
{
    public string Name { get; } = name;

    /// <summary>The status of a non-empty prefix of [offset, offset+length) of <paramref name="node"/>.</summary>
    public abstract ValueTask<(long Length, uint Flags)> GetExtentAsync(BlockNode node, long offset, long length);
}
