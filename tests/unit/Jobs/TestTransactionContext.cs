using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Transactions;

namespace ExportServer.UnitTests.Jobs;

/// <summary>A graph and a job registry with no daemon around them: nodes have no users to move.</summary>
internal sealed class TestTransactionContext(JobRegistry jobs) : ITransactionContext
{
    public BlockGraph Graph { get; } = new();

    public JobRegistry Jobs => jobs;

    public BlockNode Lookup(string? device, string? nodeName) =>
        (device is null ? null : Graph.TryFind(device)) ?? (nodeName is null ? null : Graph.TryFind(nodeName))
        ?? throw BlockException.Invalid($"Cannot find device='{device}' nor node-name='{nodeName}'");

    public ValueTask ReplaceUsersAsync(BlockNode old, BlockNode replacement) => ValueTask.CompletedTask;

    public void SyncUsers()
    {
    }

    public ValueTask SetReadOnlyAsync(BlockNode node, bool readOnly) => node.SetReadOnlyAsync(readOnly);
}
