using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>Work deferred to the end of a batch of completions on one thread.</summary>
public sealed class CompletionBatchTests
{
    private sealed class Counting(List<string> log, string name) : CompletionBatch.IFlush
    {
        public int Flushes { get; private set; }

        public void Flush()
        {
            Flushes++;
            log.Add(name);
        }
    }

    [Fact]
    public void OutsideABatchNothingIsDeferred()
    {
        var flush = new Counting([], "a");
        Assert.False(CompletionBatch.TryDefer(flush));
        Assert.Equal(0, flush.Flushes);
    }

    [Fact]
    public void WorkDeferredTwiceRunsOnceAtTheEndInTheOrderFirstDeferred()
    {
        var log = new List<string>();
        var a = new Counting(log, "a");
        var b = new Counting(log, "b");
        CompletionBatch.Begin();
        Assert.True(CompletionBatch.TryDefer(a));
        Assert.True(CompletionBatch.TryDefer(b));
        Assert.True(CompletionBatch.TryDefer(a));
        Assert.Empty(log);
        CompletionBatch.End();
        Assert.Equal(["a", "b"], log);

        // The batch is over: the next deferral is refused and the next batch starts empty.
        Assert.False(CompletionBatch.TryDefer(a));
        CompletionBatch.Begin();
        CompletionBatch.End();
        Assert.Equal(1, a.Flushes);
    }

    [Fact]
    public async Task ABatchBelongsToTheThreadThatOpenedIt()
    {
        var flush = new Counting([], "a");
        CompletionBatch.Begin();
        try
        {
            var elsewhere = await Task.Factory.StartNew(() => CompletionBatch.TryDefer(flush), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            Assert.False(elsewhere);
        }
        finally
        {
            CompletionBatch.End();
        }

        Assert.Equal(0, flush.Flushes);
    }
}
