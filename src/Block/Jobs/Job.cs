using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// QEMU's job lifecycle around a <see cref="JobBody"/>. Every status change goes through
/// <see cref="JobStateTable"/> and is reported to <see cref="IJobEvents"/>, as are the body's ready
/// and error reports and the job's end. The body runs in the background; its end leads to
/// waiting → pending → (finalize) → concluded on success, or aborting → concluded on failure or
/// cancel; concluded → null on dismiss. A verb the status does not accept fails with QEMU's words.
/// </summary>
public sealed class Job : IJobObserver
{
    private readonly IJobEvents _events;
    private readonly Action<Job> _dismissed;
    private readonly object _gate = new();
    private int _finalizing;

    internal Job(string id, JobBody body, IJobEvents events, Action<Job> dismissed, bool autoFinalize = true, bool autoDismiss = true)
    {
        Id = id;
        Body = body;
        _events = events;
        _dismissed = dismissed;
        AutoFinalize = autoFinalize;
        AutoDismiss = autoDismiss;
        Control = new JobControl(this);
    }

    public string Id { get; }

    public JobBody Body { get; }

    public string Type => Body.Type;

    /// <summary>Whether the job is a block job (shown by query-block-jobs, reported by BLOCK_JOB_* events).</summary>
    public bool IsBlockJob => Body.IsBlockJob;

    public JobControl Control { get; }

    /// <summary>The jobs this one ends with (transaction completion-mode grouped), if any.</summary>
    public JobGroup? Group { get; private set; }

    public bool AutoFinalize { get; }

    public bool AutoDismiss { get; }

    public JobStatus Status { get; private set; } = JobStatus.Undefined;

    /// <summary>Set by job-pause / block-job-pause and by a stop error policy; job-resume clears it.</summary>
    public bool UserPaused { get; private set; }

    public string? Error { get; private set; }

    public long CurrentProgress => Control.Offset;

    public long TotalProgress => Control.Length;

    /// <summary>Enters created and running and starts the body.</summary>
    public void Start()
    {
        lock (_gate)
        {
            Transition(JobStatus.Created);
            Transition(JobStatus.Running);
        }

        Body.Attach(Control);
        _ = Task.Run(RunAsync);
    }

    /// <summary>Makes this job, not yet started, end together with the others of <paramref name="group"/>.</summary>
    public void JoinGroup(JobGroup group)
    {
        Group = group;
        group.Add(this);
    }

    /// <summary>Another job of the group failed: a running job is cancelled; a waiting one aborts when it sees the outcome.</summary>
    internal void CancelForGroup()
    {
        lock (_gate)
        {
            if (Status is not (JobStatus.Created or JobStatus.Running or JobStatus.Paused or JobStatus.Ready or JobStatus.Standby))
            {
                return;
            }

            UserPaused = false;
        }

        Control.Cancel(force: true);
    }

    public void Check(JobVerb verb)
    {
        lock (_gate)
        {
            if (!JobStateTable.Accepts(Status, verb))
            {
                throw BlockException.Invalid($"Job '{Id}' in state '{JobStateTable.Name(Status)}' cannot accept command verb '{JobStateTable.Name(verb)}'");
            }
        }
    }

    public void Pause()
    {
        Check(JobVerb.Pause);
        lock (_gate)
        {
            if (UserPaused)
            {
                throw BlockException.Invalid("The block job is already paused");
            }

            UserPaused = true;
        }

        Control.Pause();
    }

    public void Resume()
    {
        Check(JobVerb.Resume);
        lock (_gate)
        {
            if (!UserPaused)
            {
                throw BlockException.Invalid("Can't resume a job that was not paused");
            }

            UserPaused = false;
        }

        Control.Resume();
    }

    public void SetSpeed(long speed)
    {
        Check(JobVerb.SetSpeed);
        if (speed < 0)
        {
            throw BlockException.Invalid("Parameter 'speed' expects a non-negative value");
        }

        Control.Rate.Speed = speed;
        Control.Kick();
    }

    public void Complete()
    {
        Check(JobVerb.Complete);
        if (Control.CancelRequested || !Body.CanComplete)
        {
            throw BlockException.Invalid($"The active block job '{Id}' cannot be completed");
        }

        Control.Complete();
    }

    /// <summary>A pending job is aborted at once; a running one is told to stop (or, ready and not forced, to finish without pivot).</summary>
    public void Cancel(bool force)
    {
        Check(JobVerb.Cancel);
        lock (_gate)
        {
            UserPaused = false;
        }

        Control.Cancel(force);
        bool waiting;
        lock (_gate)
        {
            waiting = Status == JobStatus.Waiting;
        }

        if (waiting)
        {
            // Done with its work but waiting for its group: cancelling it fails the group.
            Group?.Fail(this);
        }

        bool pending;
        lock (_gate)
        {
            pending = Status == JobStatus.Pending;
        }

        if (pending)
        {
            _ = Task.Run(() => AbortAsync(cancelled: true));
        }
    }

    public Task FinalizeAsync()
    {
        Check(JobVerb.Finalize);
        return FinalizeCoreAsync();
    }

    public void Dismiss()
    {
        lock (_gate)
        {
            Check(JobVerb.Dismiss);
            Transition(JobStatus.Null);
        }

        _dismissed(this);
    }

    void IJobObserver.Paused()
    {
        lock (_gate)
        {
            if (Status == JobStatus.Running)
            {
                Transition(JobStatus.Paused);
            }
            else if (Status == JobStatus.Ready)
            {
                Transition(JobStatus.Standby);
            }
        }
    }

    void IJobObserver.Resumed()
    {
        lock (_gate)
        {
            if (Status == JobStatus.Paused)
            {
                Transition(JobStatus.Running);
            }
            else if (Status == JobStatus.Standby)
            {
                Transition(JobStatus.Ready);
            }
        }
    }

    void IJobObserver.Ready()
    {
        lock (_gate)
        {
            Transition(JobStatus.Ready);
            _events.Ready(this);
        }
    }

    void IJobObserver.Error(bool read, ErrorAction action)
    {
        if (action == ErrorAction.Stop)
        {
            lock (_gate)
            {
                UserPaused = true;
            }
        }

        _events.Error(this, read, action);
    }

    private async Task RunAsync()
    {
        Exception? failure = null;
        try
        {
            await Body.RunAsync(Control).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            failure = e;
        }

        if (failure is not null || Control.IsCancelled)
        {
            Group?.Fail(this);
            if (failure is not OperationCanceledException && failure is not null)
            {
                Error = failure.Message;
            }

            await AbortAsync(cancelled: failure is OperationCanceledException || (failure is null && Control.IsCancelled)).ConfigureAwait(false);
            return;
        }

        lock (_gate)
        {
            Transition(JobStatus.Waiting);
        }

        if (Group is { } group && !await group.SucceededAsync().ConfigureAwait(false))
        {
            await AbortAsync(cancelled: true).ConfigureAwait(false);
            return;
        }

        lock (_gate)
        {
            Transition(JobStatus.Pending);
        }

        if (AutoFinalize)
        {
            await FinalizeCoreAsync().ConfigureAwait(false);
        }
    }

    private async Task FinalizeCoreAsync()
    {
        if (Interlocked.Exchange(ref _finalizing, 1) != 0)
        {
            return;
        }

        try
        {
            await Body.CommitAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Error = e.Message;
            Interlocked.Exchange(ref _finalizing, 0);
            await AbortAsync(cancelled: false).ConfigureAwait(false);
            return;
        }

        await CleanAsync().ConfigureAwait(false);
        Conclude(cancelled: false);
    }

    private async Task AbortAsync(bool cancelled)
    {
        if (Interlocked.Exchange(ref _finalizing, 1) != 0)
        {
            return;
        }

        lock (_gate)
        {
            if (Status is JobStatus.Paused or JobStatus.Standby)
            {
                Transition(Status == JobStatus.Paused ? JobStatus.Running : JobStatus.Ready);
            }

            Transition(JobStatus.Aborting);
        }

        if (cancelled)
        {
            Error ??= "Operation canceled";
        }

        try
        {
            await Body.AbortAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Error ??= e.Message;
        }

        await CleanAsync().ConfigureAwait(false);
        Conclude(cancelled);
    }

    private async Task CleanAsync()
    {
        try
        {
            await Body.CleanAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Error ??= e.Message;
        }
    }

    private void Conclude(bool cancelled)
    {
        var dismiss = false;
        lock (_gate)
        {
            _events.Ended(this, cancelled);
            Transition(JobStatus.Concluded);
            if (AutoDismiss)
            {
                Transition(JobStatus.Null);
                dismiss = true;
            }
        }

        if (dismiss)
        {
            _dismissed(this);
        }
    }

    private void Transition(JobStatus to)
    {
        if (!JobStateTable.CanTransition(Status, to))
        {
            throw new InvalidOperationException($"job '{Id}': no transition {Status} -> {to}");
        }

        Status = to;
        _events.StatusChanged(this, to);
    }
}
