namespace ExportServer.Server.Commands;

/// <summary>The "abort" action: its prepare always fails, so the whole transaction is rolled back.</summary>
internal sealed class AbortAction : ITransactionAction
{
    public ValueTask PrepareAsync() => throw Qmp.QmpException.Generic("Transaction aborted using Abort action");

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public ValueTask AbortAsync() => ValueTask.CompletedTask;
}
