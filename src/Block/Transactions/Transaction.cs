namespace ExportServer.Block.Transactions;

/// <summary>
/// Runs actions as one, as QEMU's qmp_transaction: each is prepared in order; if all succeed, all
/// are committed in order; on the first failure, every action whose prepare began is aborted,
/// newest first, and the failure is rethrown. Every action is cleaned, in order, at the end.
/// </summary>
public static class Transaction
{
    public static async ValueTask RunAsync(IReadOnlyList<ITransactionAction> actions)
    {
        var prepared = new List<ITransactionAction>();
        try
        {
            try
            {
                foreach (var a in actions)
                {
                    // Added first: a prepare that fails halfway is aborted too.
                    prepared.Add(a);
                    await a.PrepareAsync().ConfigureAwait(false);
                }
            }
            catch
            {
                for (var i = prepared.Count - 1; i >= 0; i--)
                {
                    await prepared[i].AbortAsync().ConfigureAwait(false);
                }

                throw;
            }

            foreach (var a in actions)
            {
                await a.CommitAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (var a in prepared)
            {
                await a.CleanAsync().ConfigureAwait(false);
            }
        }
    }
}
