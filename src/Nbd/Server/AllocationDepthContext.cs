using ExportServer.Block.Core;

namespace ExportServer.Nbd.Server;

/// <summary>"qemu:allocation-depth": the backing-chain layer holding the range (0 = none, 1 = the exported node, …).</summary>
internal sealed class AllocationDepthContext() : NbdMetaContext("qemu:allocation-depth")
{
    public override async ValueTask<(long Length, uint Flags)> GetExtentAsync(BlockNode node, long offset, long length)
    {
        var s = await node.GetBlockStatusAboveAsync(offset, length).ConfigureAwait(false);
        return (s.Length, (uint)s.Depth);
    }
}
