using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>The "abort" action: its prepare always fails, so the whole transaction is rolled back.</summary>
public sealed class AbortAction : ITransactionAction
{
    public ValueTask PrepareAsync() => throw BlockException.Invalid("Transaction aborted using Abort action");

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync() => ValueTask.CompletedTask;
}
