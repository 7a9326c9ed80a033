namespace ExportServer.Server.Commands;

/// <summary>
/// One action of a transaction, QEMU's TransactionActionDrv: prepare does everything that can fail
/// and is undone by abort; commit makes the change visible and must not fail.
/// </summary>
internal interface ITransactionAction
{
    ValueTask PrepareAsync();

    ValueTask CommitAsync();

    ValueTask AbortAsync();
}
