using ExportServer.Block.Jobs;

namespace ExportServer.UnitTests.Jobs;

/// <summary>Records what a job body reports.</summary>
internal sealed class RecordingObserver : IJobObserver
{
    public List<(bool Read, ErrorAction Action)> Errors { get; } = new();

    public TaskCompletionSource PausedSignal { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource ReadySignal { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Paused() => PausedSignal.TrySetResult();

    public int ResumedCount => Volatile.Read(ref _resumed);

    private int _resumed;

    public void Resumed() => Interlocked.Increment(ref _resumed);

    public void Ready() => ReadySignal.TrySetResult();

    public void Error(bool read, ErrorAction action)
    {
        lock (Errors)
        {
            Errors.Add((read, action));
        }
    }
}
