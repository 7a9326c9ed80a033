using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Bochs;

/// <summary>The "bochs" driver (Bochs growing redolog images), read-only: option file only.</summary>
internal sealed class BochsDriver : IBlockDriver, IFormatProbe
{
    public static BochsDriver Instance { get; } = new();

    public string Name => "bochs";

    public int Probe(ReadOnlySpan<byte> head, string? fileName) => BochsHeader.Matches(head) ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        ReadOnlyFormat.ReadOnlyOrRefuse(context);
        return await BochsNode.OpenAsync(context.NodeName, file).ConfigureAwait(false);
    }
}
