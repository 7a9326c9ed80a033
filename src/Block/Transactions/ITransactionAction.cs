namespace ExportServer.Block.Transactions;

/// <summary>
/// One action of a transaction, QEMU's TransactionActionDrv: prepare does everything that can fail
/// and is undone by abort; commit makes the change visible and must not fail; clean runs last
/// either way. <see cref="Transaction"/> runs them in QEMU's order.
/// </summary>
public interface ITransactionAction
{
    ValueTask PrepareAsync();

    ValueTask CommitAsync();

    ValueTask AbortAsync();

    ValueTask CleanAsync() => ValueTask.CompletedTask;
}
