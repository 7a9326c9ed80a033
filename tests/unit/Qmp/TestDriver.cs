using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.UnitTests.Support;

namespace ExportServer.UnitTests.Qmp;

/// <summary>"memory" (a MemoryNode) and "overlay" (an OverlayNode) drivers with a 'size' option, for in-process QMP tests.</summary>
internal sealed class TestDriver(string name) : IBlockDriver
{
    public string Name { get; } = name;

    public ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var size = options.GetSize("size") ?? 1 << 20;
        options.Raw("backing");
        BlockNode node = Name == "overlay"
            ? new OverlayNode(context.NodeName, size)
            : new MemoryNode(context.NodeName, size, context.ReadOnly);
        return ValueTask.FromResult(node);
    }
}
