using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>"base:allocation": HOLE where the chain holds no data, ZERO where it reads as zeroes.</summary>
internal sealed class BaseAllocationContext() : NbdMetaContext("base:allocation")
{
    public override async ValueTask<(long Length, uint Flags)> GetExtentAsync(BlockNode node, long offset, long length)
    {
        var s = await node.GetBlockStatusAboveAsync(offset, length).ConfigureAwait(false);
        var flags = (s.IsData ? 0 : NbdConstants.StateHole) | (s.IsZero ? NbdConstants.StateZero : 0);
        return (s.Length, flags);
    }
}
