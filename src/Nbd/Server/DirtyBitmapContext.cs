using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Server;

/// <summary>"qemu:dirty-bitmap:NAME": 1 (dirty) for the granules the bitmap marks, 0 elsewhere.</summary>
internal sealed class DirtyBitmapContext(BlockDirtyBitmap bitmap) : NbdMetaContext("qemu:dirty-bitmap:" + bitmap.Name)
{
    private const uint Dirty = 1;

    public override ValueTask<(long Length, uint Flags)> GetExtentAsync(BlockNode node, long offset, long length)
    {
        var bits = bitmap.Bits;
        if (offset >= bits.Length)
        {
            return ValueTask.FromResult((length, 0u));
        }

        var (run, dirty) = bits.Extent(offset, Math.Min(length, bits.Length - offset));
        return ValueTask.FromResult((run, dirty ? Dirty : 0u));
    }
}
