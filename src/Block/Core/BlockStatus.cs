namespace ExportServer.Block.Core;

/// <summary>
/// The status of the first <see cref="Length"/> bytes of a queried range. <see cref="Depth"/> is the
/// position in the backing chain of the layer that holds the data (1 = the queried node, 0 = nowhere);
/// only <see cref="BlockNode.GetBlockStatusAboveAsync"/> fills it.
/// </summary>
public readonly record struct BlockStatus(long Length, BlockStatusFlags Flags, int Depth = 0)
{
    public bool IsData => (Flags & BlockStatusFlags.Data) != 0;

    public bool IsZero => (Flags & BlockStatusFlags.Zero) != 0;

    public bool IsAllocated => (Flags & BlockStatusFlags.Allocated) != 0;
}
