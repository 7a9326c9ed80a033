using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// An action whose prepare always fails with <paramref name="message"/>, so the whole transaction is
/// rolled back: the "abort" action, or an action that does not support the transaction's properties.
/// </summary>
public sealed class AbortAction(string message = "Transaction aborted using Abort action") : ITransactionAction
{
    public ValueTask PrepareAsync() => throw BlockException.Invalid(message);

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync() => ValueTask.CompletedTask;
}
