using ExportServer.Block.Core;
using ExportServer.Nbd.Server;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

/// <summary>A connection's request slots and where its waiting receive loop resumes (ReceiveLoopWaiter).</summary>
public sealed class RequestSlotsTests
{
    private sealed class Logging(List<string> log) : CompletionBatch.IFlush
    {
        public void Flush() => log.Add("flush");
    }

    [Fact]
    public async Task FreeSlotsAreTakenAtOnceAndTheNextWaitsForOneGivenBack()
    {
        var slots = new RequestSlots(2);
        Assert.True(slots.TakeAsync().IsCompletedSuccessfully);
        Assert.True(slots.TryTake());
        Assert.Equal(0, slots.Free);
        Assert.False(slots.TryTake());

        var third = slots.TakeAsync().AsTask();
        Assert.False(third.IsCompleted);

        // The slot given back goes to the waiter, not to the free count.
        slots.Give();
        await third.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(0, slots.Free);
        slots.Give();
        Assert.Equal(1, slots.Free);

        // The same waiter waits again.
        Assert.True(slots.TryTake());
        var fourth = slots.TakeAsync().AsTask();
        Assert.False(fourth.IsCompleted);
        slots.Give();
        await fourth.WaitAsync(TimeSpan.FromSeconds(5));
    }

    /// <summary>
    /// A slot given back inside a batch that takes resumptions (the native-library completion thread's):
    /// the waiting loop resumes on that thread, after the batch's flushes, not on the thread pool.
    /// </summary>
    [Fact]
    public async Task TheWaiterResumesOnTheBatchsThreadAfterItsFlushes()
    {
        var (log, batchThread, resumedOn, runningThere) = await GiveInsideABatch(resumesHere: true);
        Assert.Equal(["given", "flush", "resumed"], log);
        Assert.Equal(batchThread, resumedOn);
        Assert.True(runningThere);
    }

    [Fact]
    public async Task InABatchThatTakesNoResumptionsTheWaiterResumesOnTheThreadPool()
    {
        // Here it does not wait for the batch's end.
        var (log, batchThread, resumedOn, _) = await GiveInsideABatch(resumesHere: false);
        Assert.Equal(["given", "resumed", "flush"], log);
        Assert.NotEqual(batchThread, resumedOn);
    }

    private static async Task<(List<string> Log, int BatchThread, int ResumedOn, bool Running)> GiveInsideABatch(bool resumesHere)
    {
        var slots = new RequestSlots(1);
        Assert.True(slots.TryTake());
        var log = new List<string>();
        var resumed = new TaskCompletionSource<(int, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        slots.TakeAsync().ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(() =>
        {
            lock (log)
            {
                log.Add("resumed");
            }

            resumed.SetResult((Environment.CurrentManagedThreadId, CompletionBatch.Running));
        });

        var batchThread = 0;
        var thread = new Thread(() =>
        {
            batchThread = Environment.CurrentManagedThreadId;
            CompletionBatch.Begin(resumesHere);
            Assert.True(CompletionBatch.TryDefer(new Logging(log)));
            lock (log)
            {
                log.Add("given");
            }

            slots.Give();

            // The resumption waits for the batch's end (the pool may take it at once when the batch takes none).
            if (resumesHere)
            {
                Thread.Sleep(50);
                Assert.False(resumed.Task.IsCompleted);
            }
            else
            {
                resumed.Task.Wait(TimeSpan.FromSeconds(5));
            }

            CompletionBatch.End();
        });
        thread.Start();
        var (resumedOn, running) = await resumed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        thread.Join();
        lock (log)
        {
            return ([.. log], batchThread, resumedOn, running);
        }
    }
}
