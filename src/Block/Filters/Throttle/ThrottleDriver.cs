using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.Throttle;

/// <summary>The 'throttle' driver: a filter over 'file' whose I/O is limited by the throttle-group object it names.</summary>
internal sealed class ThrottleDriver : IBlockDriver
{
    public static ThrottleDriver Instance { get; } = new();

    public string Name => "throttle";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var groupName = options.RequireString("throttle-group");
        var group = context.Graph.Objects.TryGet<ThrottleGroup>(groupName)
                    ?? throw BlockException.Invalid($"Throttle group '{groupName}' does not exist");
        var file = await context.OpenChildAsync(options, "file").ConfigureAwait(false)
                   ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");

        // As for QEMU's filters, a writable filter over a read-only node is allowed: it asks for write
        // access only when a writer uses it, so writes fail at the child instead.
        return new ThrottleNode(context.NodeName, context.ReadOnly, file, group);
    }
}
