using ExportServer.Block.Core;

namespace ExportServer.Block;

/// <summary>The drivers built into the block layer.</summary>
public static class BlockDrivers
{
    public static void RegisterBuiltIn(BlockGraph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
    }
}
