namespace ExportServer.Block.Core;

/// <summary>
/// Request limits of a node. The common I/O path guarantees drivers that every request offset
/// and length is a multiple of <see cref="RequestAlignment"/> and no longer than <see cref="MaxTransfer"/>.
/// </summary>
public sealed record BlockLimits(
    int RequestAlignment = 1,
    int MaxTransfer = 32 * 1024 * 1024,
    int DiscardGranularity = 0,
    int OptimalTransfer = 0,
    int MemoryAlignment = 1)
{
    public static BlockLimits Default { get; } = new();
}
