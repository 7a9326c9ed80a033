using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.CopyBeforeWrite;

/// <summary>
/// The 'copy-before-write' driver (QAPI BlockdevOptionsCbw): a filter over 'file' that copies old
/// data to 'target' before it is overwritten; 'bitmap' limits what is kept to the clusters it marks,
/// 'on-cbw-error' and 'cbw-timeout' say what a failed or slow copy does, 'min-cluster-size' raises
/// the copy granularity.
/// </summary>
internal sealed class CopyBeforeWriteDriver : IBlockDriver
{
    private static readonly Dictionary<string, OnCbwError> OnErrorValues = new()
    {
        ["break-guest-write"] = OnCbwError.BreakGuestWrite,
        ["break-snapshot"] = OnCbwError.BreakSnapshot,
    };

    public static CopyBeforeWriteDriver Instance { get; } = new();

    public string Name => "copy-before-write";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        // QEMU reads the driver's own options first, then opens the children, then finds the bitmap.
        var onError = options.GetEnum("on-cbw-error", OnErrorValues) ?? OnCbwError.BreakGuestWrite;
        var timeout = options.GetInt("cbw-timeout") ?? 0;
        if (timeout is < 0 or > uint.MaxValue)
        {
            throw BlockException.Invalid($"Parameter '{options.FullName("cbw-timeout")}' expects uint32_t");
        }

        var minCluster = options.GetSize("min-cluster-size") ?? 0;
        if (minCluster != 0 && (minCluster & (minCluster - 1)) != 0)
        {
            throw BlockException.Invalid("min-cluster-size needs to be a power of 2");
        }

        var bitmapRef = options.GetObject("bitmap");
        var source = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        var target = await context.OpenChildAsync(options, "target").ConfigureAwait(false);
        DirtyBitmap? bits = null;
        if (bitmapRef is not null)
        {
            var (_, bitmap) = BitmapLookup.Find(context.Graph, bitmapRef.RequireString("node"), bitmapRef.RequireString("name"));
            bitmapRef.EnsureAllConsumed();
            bits = bitmap.Bits;
        }

        return new CopyBeforeWriteNode(
            context.NodeName, context.ReadOnly, source, target!, bits, onError, TimeSpan.FromSeconds(timeout), minCluster);
    }
}
