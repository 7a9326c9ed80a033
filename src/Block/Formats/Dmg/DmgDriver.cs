using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Dmg;

/// <summary>The "dmg" driver (Apple disk images, UDIF), read-only: option file only.</summary>
internal sealed class DmgDriver : IBlockDriver, IFormatProbe
{
    public static DmgDriver Instance { get; } = new();

    public string Name => "dmg";

    /// <summary>QEMU's dmg_probe: a dmg has no magic at its start, so the file name decides, with a low score.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        fileName is { Length: > 4 } && fileName.EndsWith(".dmg", StringComparison.Ordinal) ? 2 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        ReadOnlyFormat.ReadOnlyOrRefuse(context);
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        return await DmgNode.OpenAsync(context.NodeName, file).ConfigureAwait(false);
    }
}
