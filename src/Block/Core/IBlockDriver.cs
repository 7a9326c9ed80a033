using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>A driver as the graph sees it: a name and a way to open a node from options.</summary>
public interface IBlockDriver
{
    /// <summary>QEMU's name for the driver, the value of the 'driver' option.</summary>
    string Name { get; }

    /// <summary>
    /// Opens a node. Generic options (node-name, read-only, discard, cache.*, …) are already read
    /// into <paramref name="context"/>; the driver reads its own from <paramref name="options"/>;
    /// the caller refuses whatever is left unread.
    /// </summary>
    ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options);
}
