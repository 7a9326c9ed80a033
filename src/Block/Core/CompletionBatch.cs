namespace ExportServer.Block.Core;

/// <summary>
/// A batch of request completions that one thread resumes in a row (the io_uring completion thread
/// with everything one io_uring_enter reaped, the native-library completion thread with its queue).
/// Work that gains from being done once for the whole batch rather than once per request (an NBD
/// connection sending its replies) is deferred to the batch's end: forty replies then leave in one
/// send instead of forty, as QEMU corks a connection's socket around a batch of replies.
/// Thread-bound: only the code that runs synchronously inside the batch on its thread sees it.
/// </summary>
public static class CompletionBatch
{
    /// <summary>Work to finish once the batch ends; done at most once per batch however often it is deferred.</summary>
    public interface IFlush
    {
        void Flush();
    }

    [ThreadStatic]
    private static List<IFlush>? t_deferred;

    [ThreadStatic]
    private static bool t_open;

    /// <summary>
    /// Defers <paramref name="flush"/> to the end of the batch running on this thread; false (and
    /// nothing deferred) when no batch is open here, so the caller must do the work itself now.
    /// </summary>
    public static bool TryDefer(IFlush flush)
    {
        if (!t_open)
        {
            return false;
        }

        var deferred = t_deferred ??= new List<IFlush>();
        if (!deferred.Contains(flush))
        {
            deferred.Add(flush);
        }

        return true;
    }

    /// <summary>Opens a batch on this thread; <see cref="End"/> closes it. Batches do not nest.</summary>
    internal static void Begin()
    {
        System.Diagnostics.Debug.Assert(!t_open, "completion batches do not nest");
        t_open = true;
    }

    /// <summary>
    /// Closes the batch and runs what was deferred to it, in the order first deferred. Work deferred
    /// while this runs (a flush that completes further requests) is not batched: it runs at once.
    /// </summary>
    internal static void End()
    {
        t_open = false;
        var deferred = t_deferred;
        if (deferred is null)
        {
            return;
        }

        // The batch is closed: nothing is added to the list while it runs.
        foreach (var flush in deferred)
        {
            flush.Flush();
        }

        deferred.Clear();
    }
}
