using System.Collections.Concurrent;
using ExportServer.Block.Core;

namespace ExportServer.Block.Native;

/// <summary>
/// The one thread on which requests to librbd and libgfapi resume (<see cref="NativeCompletion"/>),
/// as QEMU's drivers hand each completion to their AioContext. The libraries' own callback threads
/// must not run the caller's code: it may call the library synchronously (rbd_diff_iterate2,
/// glfs_lseek) and wait on the very thread that would deliver the answer. Resuming on the .NET thread
/// pool was safe but costly under sequential load: every completion woke a pool worker, and idle
/// workers spin in sched_yield before they sleep, which took CPU from the cluster's own threads on
/// the same cores (a 1 GiB nbdcopy write to rbd: 58,000 context switches in the daemon against
/// 35,000 with this thread). This thread sleeps as soon as its queue is empty. Code that runs here
/// must not wait synchronously for another librbd or libgfapi request.
/// </summary>
internal static class NativeCompletionThread
{
    private static readonly ConcurrentQueue<NativeCompletion> Ready = new();
    private static readonly object Gate = new();
    private static readonly Thread Worker = Start();

    /// <summary>1 while the thread is going to sleep or asleep: only then does a completion need to wake it.</summary>
    private static int s_idle;

    /// <summary>Queues <paramref name="request"/> to resume on this thread; called on a library's thread.</summary>
    public static void Post(NativeCompletion request)
    {
        _ = Worker;
        Ready.Enqueue(request);
        if (Volatile.Read(ref s_idle) == 1)
        {
            lock (Gate)
            {
                Monitor.Pulse(Gate);
            }
        }
    }

    private static Thread Start()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "native-completions" };
        thread.Start();
        return thread;
    }

    private static void Run()
    {
        while (true)
        {
            // What is queued resumes as one batch (see CompletionBatch): an NBD connection sends the
            // replies of the requests resumed here together, once the queue is empty. A receive loop
            // waiting for the slots those requests held resumes here after them (ReceiveLoopWaiter).
            CompletionBatch.Begin(resumesHere: true);
            while (Ready.TryDequeue(out var request))
            {
                request.Resume();
            }

            CompletionBatch.End();

            lock (Gate)
            {
                // Interlocked for the full fence: a producer enqueues before it reads s_idle, this thread
                // sets s_idle before it looks at the queue, so one of the two sees the other.
                Interlocked.Exchange(ref s_idle, 1);
                if (Ready.IsEmpty)
                {
                    Monitor.Wait(Gate);
                }

                Volatile.Write(ref s_idle, 0);
            }
        }
    }
}
