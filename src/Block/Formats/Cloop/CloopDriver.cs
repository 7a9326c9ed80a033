using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Cloop;

/// <summary>The "cloop" driver (compressed loop images), read-only: option file only.</summary>
internal sealed class CloopDriver : IBlockDriver, IFormatProbe
{
    public static CloopDriver Instance { get; } = new();

    public string Name => "cloop";

    /// <summary>QEMU's cloop_probe: the version 2.0 preamble (as much of it as was read), with a low score.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName)
    {
        var magic = CloopHeader.Magic;
        var n = Math.Min(magic.Length, head.Length);
        return head[..n].SequenceEqual(magic[..n]) ? 2 : 0;
    }

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        ReadOnlyFormat.ReadOnlyOrRefuse(context);
        return await CloopNode.OpenAsync(context.NodeName, file).ConfigureAwait(false);
    }
}
