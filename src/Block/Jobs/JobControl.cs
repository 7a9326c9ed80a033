using System.Runtime.ExceptionServices;
using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// The run-time controls of one job, shared by its body (which calls the pause points, the rate
/// limit and the error policy) and its owner (which pauses, resumes, cancels, completes and sets
/// the speed). Pauses nest: each <see cref="Pause"/> needs a <see cref="Resume"/>.
/// </summary>
public sealed class JobControl
{
    /// <summary>The longest single throttle wait (the loop asks again after it); a wait must fit in int milliseconds.</summary>
    private static readonly TimeSpan MaxThrottleWait = TimeSpan.FromHours(1);

    private readonly CancellationTokenSource _cancel = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly object _gate = new();
    private TaskCompletionSource _resumed = NewSignal();
    private int _pauseCount;
    private long _offset;
    private long _length;
    private int _busy = 1;
    private int _failing;
    private Exception? _failure;

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
                ReleaseLocked();
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
            ReleaseLocked();
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
    /// when cancelled (or the failure a deferred error policy reported), waits while paused.
    /// </summary>
    public async ValueTask PausePointAsync()
    {
        ThrowIfStopped();
        Task resumed;
        lock (_gate)
        {
            if (_pauseCount == 0)
            {
                return;
            }

            resumed = _resumed.Task;
            IsPausedAtPoint = true;
            Volatile.Write(ref _busy, 0);
            Observer?.Paused();
        }

        // Whoever lets the job go (resume, cancel) reports it resumed, before its command returns.
        await resumed.ConfigureAwait(false);
        ThrowIfStopped();
    }

    /// <summary>
    /// Releases a body waiting at a pause point (called under the gate). The resume is reported
    /// here, not when the body wakes: as in QEMU, where the job has left standby or paused by the
    /// time job-resume returns, so a block-job-complete right after it finds the job ready.
    /// </summary>
    private void ReleaseLocked()
    {
        if (IsPausedAtPoint)
        {
            IsPausedAtPoint = false;
            Volatile.Write(ref _busy, 1);
            Observer?.Resumed();
        }

        _resumed.TrySetResult();
        _resumed = NewSignal();
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

    /// <summary>
    /// Waits until the rate limit lets <paramref name="bytes"/> through, passing pause points
    /// meanwhile; before it pauses there, <paramref name="beforePause"/> lets the body finish the
    /// work it has in flight, so that a paused job's progress stands still.
    /// </summary>
    public async ValueTask ThrottleAsync(long bytes, Func<ValueTask>? beforePause = null)
    {
        while (true)
        {
            if (beforePause is not null && PauseRequested)
            {
                await beforePause().ConfigureAwait(false);
            }

            await PausePointAsync().ConfigureAwait(false);
            var delay = Rate.Reserve(bytes);
            if (delay <= TimeSpan.Zero)
            {
                return;
            }

            try
            {
                // A kick (block-job-set-speed, pause, cancel) ends the wait early: at speed 1 the
                // wait after one chunk is days long, and a new speed must apply at once.
                await _wake.WaitAsync(delay < MaxThrottleWait ? delay : MaxThrottleWait, Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The pause point at the top of the loop throws it.
            }
        }
    }

    /// <summary>
    /// Applies <paramref name="policy"/> to a failed request of the body: returns the action taken
    /// when the body should go on (Ignore: skip or redo later; Stop: the job was paused and resumed,
    /// retry), and rethrows when the failure ends the job.
    /// </summary>
    public async ValueTask<ErrorAction> HandleErrorAsync(ErrorPolicy policy, bool read, Exception error)
    {
        if (error is OperationCanceledException)
        {
            throw error;
        }

        switch (Decide(policy, read, error))
        {
            case ErrorAction.Report:
                throw Ending(error);
            case ErrorAction.Stop:
                await PausePointAsync().ConfigureAwait(false);
                return ErrorAction.Stop;
        }

        return ErrorAction.Ignore;
    }

    /// <summary>
    /// Applies <paramref name="policy"/> to a failed request made for someone else than the body (a
    /// guest write copied through to the target, as QEMU's mirror_error_action from its active write
    /// path) without waiting for the job: Stop pauses it at its next pause point, Report makes its
    /// next pause point throw <paramref name="error"/>, Ignore leaves the range to the body.
    /// </summary>
    public ErrorAction DeferError(ErrorPolicy policy, bool read, Exception error)
    {
        var action = Decide(policy, read, error);
        if (action == ErrorAction.Report)
        {
            Interlocked.CompareExchange(ref _failure, Ending(error), null);
            Kick();
        }

        return action;
    }

    /// <summary>
    /// The action <paramref name="policy"/> takes on <paramref name="error"/>, reported to the
    /// observer (BLOCK_JOB_ERROR). Stop pauses the job and sets its io-status unless it is paused
    /// already (QEMU's block_job_error_action leaves a paused job's pause and io-status alone), so
    /// one resume always lets it go on. Once one failure has ended the job (report), the failures
    /// of the requests still in flight end it too without another event: QEMU's copy loop reports
    /// the first error of a run once.
    /// </summary>
    private ErrorAction Decide(ErrorPolicy policy, bool read, Exception error)
    {
        var nospace = error is BlockException { Errno: Errno.ENOSPC };
        var action = policy switch
        {
            ErrorPolicy.Ignore => ErrorAction.Ignore,
            ErrorPolicy.Stop => ErrorAction.Stop,
            ErrorPolicy.Enospc when nospace => ErrorAction.Stop,
            _ => ErrorAction.Report,
        };
        if (Volatile.Read(ref _failing) != 0)
        {
            return ErrorAction.Report;
        }

        if (action == ErrorAction.Report && Interlocked.Exchange(ref _failing, 1) != 0)
        {
            return action;
        }

        Observer?.Error(read, action);
        if (action == ErrorAction.Stop)
        {
            lock (_gate)
            {
                if (_pauseCount == 0)
                {
                    _pauseCount = 1;
                    IoStatus = nospace ? JobIoStatus.Nospace : JobIoStatus.Failed;
                }
            }

            Kick();
        }

        return action;
    }

    /// <summary>
    /// The failure a request error ends the job with: as QEMU's jobs, which return the request's
    /// errno, the job's error is that errno's strerror text ("Input/output error"), not the node's message.
    /// </summary>
    private static BlockException Ending(Exception error)
    {
        var errno = BlockException.ErrnoOf(error);
        return new BlockException(errno, Native.LibC.StrError((int)errno), error);
    }

    /// <summary>Throws the cancel, or else a failure <see cref="DeferError"/> reported.</summary>
    private void ThrowIfStopped()
    {
        Token.ThrowIfCancellationRequested();
        if (Volatile.Read(ref _failure) is { } failure)
        {
            ExceptionDispatchInfo.Throw(failure);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
