using ExportServer.Block.Core;

namespace ExportServer.Server.Daemon;

/// <summary>A block export as query-block-exports shows it, with the way to shut it down.</summary>
internal sealed record ExportEntry(string Id, string Type, BlockNode Node, Func<bool, ValueTask> RemoveAsync)
{
    public bool ShuttingDown { get; set; }
}
