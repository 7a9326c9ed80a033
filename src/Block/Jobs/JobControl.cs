using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// The run-time controls of one job, shared by its body (which calls the pause points, the rate
/// limit and the error policy) and its owner (which pauses, resumes, cancels, completes and sets
/// the speed). Pauses nest: each <see cref="Pause"/> needs a <see cref="Resume"/>.
/// </summary>
public sealed class JobControl
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly object _gate = new();
    private TaskCompletionSource _resumed = NewSignal();
    private int _pauseCount;
    private long _offset;
    private long _length;
    private int _busy = 1;

    public JobControl(IJobObserver? observer = null)
    {
        Observer = observer;
    }

    public IJobObserver? Observer { get; set; }

    public RateLimiter Rate { get; } = new();

    public CancellationToken Token => _cancel.Token;

    /// <summary>A cancel was requested; <see cref="Force"/> says whether it may not end as a completion.</summary>
    public bool CancelRequested { get; private set; }

    public bool Force { get; private set; }

    /// <summary>The body must stop now: a forced cancel, or any cancel of a job that is not ready.</summary>
    public bool IsCancelled => _cancel.IsCancellationRequested;

    /// <summary>block-job-complete was accepted (mirror and active commit pivot).</summary>
    public bool CompleteRequested { get; private set; }

    /// <summary>Set by the body once in sync; a cancel then ends the job as completed without pivot.</summary>
    public bool IsReady { get; private set; }

    public bool IsPausedAtPoint { get; private set; }

    public bool PauseRequested
    {
        get
        {
            lock (_gate)
            {
                return _pauseCount > 0;
            }
        }
    }

    /// <summary>Whether the body is doing work rather than waiting (BlockJobInfo's busy).</summary>
    public bool Busy => Volatile.Read(ref _busy) != 0;

    public JobIoStatus IoStatus { get; private set; }

    public long Offset => Interlocked.Read(ref _offset);

    public long Length => Interlocked.Read(ref _length);

    public void AddProgress(long bytes) => Interlocked.Add(ref _offset, bytes);

    public void AddLength(long bytes) => Interlocked.Add(ref _length, bytes);

    public void SetLength(long bytes) => Interlocked.Exchange(ref _length, bytes);

    public void Pause()
    {
        lock (_gate)
        {
            _pauseCount++;
        }

        Kick();
    }

    public void Resume()
    {
        lock (_gate)
        {
            if (_pauseCount == 0)
            {
                return;
            }

            if (--_pauseCount == 0)
            {
                IoStatus = JobIoStatus.Ok;
                _resumed.TrySetResult();
                _resumed = NewSignal();
            }
        }
    }

    /// <summary>
    /// QEMU's job_cancel: a forced cancel, or a cancel before the job is ready, stops the body at its
    /// next pause point; a soft cancel of a ready job lets it finish in sync without pivoting.
    /// </summary>
    public void Cancel(bool force)
    {
        CancelRequested = true;
        Force |= force;
        if (Force || !IsReady)
        {
            _cancel.Cancel();
        }

        lock (_gate)
        {
            // A paused job must wake to see the cancel; its pauses no longer matter.
            _pauseCount = 0;
            _resumed.TrySetResult();
            _resumed = NewSignal();
        }

        Kick();
    }

    public void Complete()
    {
        CompleteRequested = true;
        Kick();
    }

    /// <summary>The body's own progress: from now on a soft cancel completes it.</summary>
    public void MarkReady()
    {
        if (IsReady)
        {
            return;
        }

        IsReady = true;
        Observer?.Ready();
    }

    /// <summary>Wakes a body waiting in <see cref="IdleAsync"/> (new dirty data, pause, cancel, complete).</summary>
    public void Kick() => _wake.Release();

    /// <summary>
    /// A point where the body may be paused or cancelled: throws <see cref="OperationCanceledException"/>
    /// when cancelled, waits while paused.
    /// </summary>
    public async ValueTask PausePointAsync()
    {
        Token.ThrowIfCancellationRequested();
        Task resumed;
        lock (_gate)
        {
            if (_pauseCount == 0)
            {
                return;
            }

            resumed = _resumed.Task;
            IsPausedAtPoint = true;
        }

        Volatile.Write(ref _busy, 0);
        Observer?.Paused();
        await resumed.ConfigureAwait(false);
        lock (_gate)
        {
            IsPausedAtPoint = false;
        }

        Volatile.Write(ref _busy, 1);
        Observer?.Resumed();
        Token.ThrowIfCancellationRequested();
    }

    /// <summary>Waits (not busy) until kicked or <paramref name="timeout"/> passes, then passes a pause point.</summary>
    public async ValueTask IdleAsync(TimeSpan timeout)
    {
        if (!PauseRequested && !CompleteRequested && !CancelRequested)
        {
            Volatile.Write(ref _busy, 0);
            try
            {
                await _wake.WaitAsync(timeout, Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Reported by the pause point below.
            }
            finally
            {
                Volatile.Write(ref _busy, 1);
            }
        }

        while (_wake.CurrentCount > 0 && _wake.Wait(0))
        {
            // Several kicks since the last look mean one more look.
        }

        await PausePointAsync().ConfigureAwait(false);
    }

    /// <summary>Waits until the rate limit lets <paramref name="bytes"/> through, passing pause points meanwhile.</summary>
    public async ValueTask ThrottleAsync(long bytes)
    {
        while (true)
        {
            await PausePointAsync().ConfigureAwait(false);
            var delay = Rate.Reserve(bytes);
            if (delay <= TimeSpan.Zero)
            {
                return;
            }

            try
            {
                await Task.Delay(delay, Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The pause point at the top of the loop throws it.
            }
        }
    }

    /// <summary>
    /// Applies <paramref name="policy"/> to a failed request: returns the action taken when the body
    /// should go on (Ignore: skip or redo later; Stop: the job was paused and resumed, retry), and
    /// rethrows when the failure ends the job.
    /// </summary>
    public async ValueTask<ErrorAction> HandleErrorAsync(ErrorPolicy policy, bool read, Exception error)
    {
        if (error is OperationCanceledException)
        {
            throw error;
        }

        var nospace = error is BlockException { Errno: Errno.ENOSPC };
        var action = policy switch
        {
            ErrorPolicy.Ignore => ErrorAction.Ignore,
            ErrorPolicy.Stop => ErrorAction.Stop,
            ErrorPolicy.Enospc when nospace => ErrorAction.Stop,
            _ => ErrorAction.Report,
        };
        Observer?.Error(read, action);
        switch (action)
        {
            case ErrorAction.Report:
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
                break;
            case ErrorAction.Stop:
                IoStatus = nospace ? JobIoStatus.Nospace : JobIoStatus.Failed;
                Pause();
                await PausePointAsync().ConfigureAwait(false);
                break;
        }

        return action;
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
