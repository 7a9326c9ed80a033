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

    [ThreadStatic]
    private static List<IResume>? t_resumes;

    /// <summary>Whether the batch open on this thread, or ending on it, takes resumptions (see <see cref="TryDeferResume"/>).</summary>
    [ThreadStatic]
    private static bool t_resumesHere;

    /// <summary>
    /// Code waiting for a resource that requests of the batch give back (an NBD connection's receive
    /// loop waiting for a free request slot), resumed on the batch's thread once its flushes are done.
    /// </summary>
    public interface IResume
    {
        void Resume();
    }

    /// <summary>
    /// Whether this thread is running a batch or the work at its end: code resumed here must neither
    /// busy-wait nor block on the device, as the thread's next completions wait behind it.
    /// </summary>
    public static bool Running => t_open || t_ending;

    [ThreadStatic]
    private static bool t_ending;

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

    /// <summary>
    /// Has <paramref name="resume"/> run on this thread once the batch open or ending here has done its
    /// flushes, instead of waking a thread-pool worker for it (which costs a wake-up, and the idle
    /// worker's spinning in sched_yield after it, CPU the storage's own threads want on a small
    /// machine). False when no batch that takes resumptions runs on this thread: the caller resumes
    /// the code elsewhere. Resumptions run in the order deferred; those deferred while they run join
    /// the end of the list.
    /// </summary>
    public static bool TryDeferResume(IResume resume)
    {
        if (!t_resumesHere)
        {
            return false;
        }

        (t_resumes ??= []).Add(resume);
        return true;
    }

    /// <summary>
    /// Opens a batch on this thread; <see cref="End"/> closes it. Batches do not nest.
    /// <paramref name="resumesHere"/>: whether it takes resumptions (<see cref="TryDeferResume"/>).
    /// </summary>
    internal static void Begin(bool resumesHere = false)
    {
        System.Diagnostics.Debug.Assert(!t_open, "completion batches do not nest");
        t_open = true;
        t_resumesHere = resumesHere;
    }

    /// <summary>
    /// Closes the batch and runs what was deferred to it, in the order first deferred, then the
    /// resumptions. Flushes deferred while this runs (a flush or a resumed loop that completes further
    /// requests) are not batched: they run at once.
    /// </summary>
    internal static void End()
    {
        t_open = false;
        t_ending = true;
        try
        {
            RunDeferred();
        }
        finally
        {
            t_ending = false;
            t_resumesHere = false;
        }
    }

    private static void RunDeferred()
    {
        var deferred = t_deferred;
        if (deferred is not null)
        {
            // The batch is closed: nothing is added to the list while it runs.
            foreach (var flush in deferred)
            {
                flush.Flush();
            }

            deferred.Clear();
        }

        var resumes = t_resumes;
        if (resumes is null)
        {
            return;
        }

        // A resumed loop may release what another waits for: that one joins the list and runs too.
        try
        {
            for (var i = 0; i < resumes.Count; i++)
            {
                resumes[i].Resume();
            }
        }
        finally
        {
            resumes.Clear();
        }
    }
}
