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

    private sealed class Resuming(List<string> log, string name, Action? then = null) : CompletionBatch.IResume
    {
        public void Resume()
        {
            log.Add($"{name} running={CompletionBatch.Running}");
            then?.Invoke();
        }
    }

    [Fact]
    public void ResumptionsRunAfterTheFlushesAndThoseTheyDeferJoinTheEnd()
    {
        var log = new List<string>();
        var second = new Resuming(log, "b");
        var first = new Resuming(log, "a", () => Assert.True(CompletionBatch.TryDeferResume(second)));
        CompletionBatch.Begin(resumesHere: true);
        Assert.True(CompletionBatch.TryDeferResume(first));
        Assert.True(CompletionBatch.TryDefer(new Counting(log, "flush")));
        Assert.Empty(log);
        CompletionBatch.End();
        Assert.Equal(["flush", "a running=True", "b running=True"], log);
        Assert.False(CompletionBatch.Running);

        // Over, and a batch that takes none refuses them.
        Assert.False(CompletionBatch.TryDeferResume(first));
        CompletionBatch.Begin();
        Assert.False(CompletionBatch.TryDeferResume(first));
        CompletionBatch.End();
        Assert.Equal(3, log.Count);
    }
}
