using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.SnapshotAccess;

/// <summary>The 'snapshot-access' driver: a read-only view of the point in time its 'file' keeps (a copy-before-write filter).</summary>
internal sealed class SnapshotAccessDriver : IBlockDriver
{
    public static SnapshotAccessDriver Instance { get; } = new();

    public string Name => "snapshot-access";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        return new SnapshotAccessNode(context.NodeName, context.ReadOnly, file);
    }
}
