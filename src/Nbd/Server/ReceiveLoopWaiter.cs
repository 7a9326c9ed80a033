using System.Threading.Tasks.Sources;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Server;

/// <summary>
/// One connection's receive loop waiting for something its requests give back (a request slot, a
/// share of the server's byte budget), at most one wait at a time. What gives it back is usually a
/// request ending on a completion thread; the loop then resumes on that thread once its batch has
/// sent its replies (<see cref="CompletionBatch.TryDeferResume"/>), and on the thread pool otherwise.
/// Under a sequential write to rbd every request waits for a slot: resuming each one on the thread
/// pool woke a worker per request, and the idle workers' spinning took a tenth of the daemon's CPU
/// from the cluster's threads on the same two cores.
/// </summary>
internal sealed class ReceiveLoopWaiter : IValueTaskSource, CompletionBatch.IResume, IThreadPoolWorkItem
{
    private ManualResetValueTaskSourceCore<bool> _core;

    public ReceiveLoopWaiter() => _core.RunContinuationsAsynchronously = false;

    /// <summary>A wait that <see cref="Wake"/> ends; the caller awaits it before it waits again.</summary>
    public ValueTask Wait() => new(this, _core.Version);

    /// <summary>Ends the current wait; called once per <see cref="Wait"/>, on any thread.</summary>
    public void Wake()
    {
        if (!CompletionBatch.TryDeferResume(this))
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void CompletionBatch.IResume.Resume() => _core.SetResult(true);

    void IThreadPoolWorkItem.Execute() => _core.SetResult(true);

    public void GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
