using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>Fills a job's bitmap from the allocation of a backing chain.</summary>
public static class ChainScan
{
    /// <summary>
    /// Marks the ranges of <paramref name="top"/>'s chain whose content comes from a layer in
    /// [<paramref name="from"/>, <paramref name="until"/>): <paramref name="from"/> = 1 is the top
    /// itself, <paramref name="until"/> the depth of the first layer not to copy (0 = no limit).
    /// Ranges no layer holds (they read as zeroes) are never marked.
    /// </summary>
    public static async ValueTask MarkAsync(BlockNode top, DirtyBitmap bitmap, int from, int until)
    {
        long offset = 0;
        var length = Math.Min(top.Length, bitmap.Length);
        while (offset < length)
        {
            var s = await top.GetBlockStatusAboveAsync(offset, length - offset).ConfigureAwait(false);
            if (s.Depth >= from && (until == 0 || s.Depth < until))
            {
                bitmap.Set(offset, s.Length);
            }

            offset += Math.Max(s.Length, 1);
        }
    }

    /// <summary>The depth of <paramref name="layer"/> below <paramref name="top"/> (1 = top), or 0 when it is not in the chain.</summary>
    public static int DepthOf(BlockNode top, BlockNode? layer)
    {
        var depth = 1;
        for (var n = BlockNode.SkipFilters(top); n is not null; n = n.BackingLayer, depth++)
        {
            if (ReferenceEquals(n, layer))
            {
                return depth;
            }
        }

        return 0;
    }
}
