using ExportServer.Block.Core;
using ExportServer.Block.Jobs;

namespace ExportServer.Block.Transactions;

/// <summary>
/// What transaction actions need from the daemon that owns the graph: its nodes and jobs, QEMU's
/// lookup of a node by device or node name, and the users above the nodes (exports).
/// </summary>
public interface ITransactionContext
{
    BlockGraph Graph { get; }

    JobRegistry Jobs { get; }

    /// <summary>QEMU's bdrv_lookup_bs: a node by device name or node name, or QEMU's "Cannot find device=… nor node-name=…".</summary>
    BlockNode Lookup(string? device, string? nodeName);

    /// <summary>Moves the users of <paramref name="old"/> (the exports' roots) onto <paramref name="replacement"/>.</summary>
    ValueTask ReplaceUsersAsync(BlockNode old, BlockNode replacement);

    /// <summary>Lets the users see a node's new size or mode.</summary>
    void SyncUsers();

    /// <summary>Changes a node's mode and that of the file children only it uses.</summary>
    ValueTask SetReadOnlyAsync(BlockNode node, bool readOnly);
}
