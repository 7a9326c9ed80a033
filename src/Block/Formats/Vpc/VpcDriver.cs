using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>The "vpc" driver (VHD images of Virtual PC and Hyper-V): option file only, as QEMU's generic format options.</summary>
internal sealed partial class VpcDriver : IBlockDriver, IFormatProbe
{
    public static VpcDriver Instance { get; } = new();

    public string Name => "vpc";

    /// <summary>The footer copy at the start of a dynamic disk; a fixed disk has none there and is probed as raw, as in QEMU.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        head.Length >= 8 && head[..8].SequenceEqual(VpcFormat.FooterCookie) ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        return await VpcNode.OpenAsync(context.NodeName, context.ReadOnly, file).ConfigureAwait(false);
    }
}
