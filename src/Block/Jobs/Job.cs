using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// QEMU's job lifecycle around a <see cref="JobBody"/>. Every status change goes through
/// <see cref="JobStateTable"/> and is reported to <see cref="IJobEvents"/>, as are the body's ready
/// and error reports and the job's end. The body runs in the background; its end leads to
/// waiting → pending → (finalize) → concluded on success, or aborting → concluded on failure or
/// cancel; concluded → null on dismiss. When and in which order jobs go from waiting on is their
/// <see cref="JobGroup"/>'s to decide. A verb the status does not accept fails with QEMU's words.
/// </summary>
public sealed class Job : IJobObserver
{
    /// <summary>strerror(ECANCELED): the error of a job that ends cancelled, as QEMU's job_update_rc sets it.</summary>
    private const string CancelledError = "Operation canceled";

    private readonly IJobEvents _events;
    private readonly Action<Job> _dismissed;
    private readonly object _gate = new();
    private readonly TaskCompletionSource _workDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _finalizing;
    private bool _held;
    private bool _launched;
    private bool _committed;

    internal Job(string id, JobBody body, IJobEvents events, Action<Job> dismissed, bool autoFinalize = true, bool autoDismiss = true)
    {
        Id = id;
        Body = body;
        _events = events;
        _dismissed = dismissed;
        AutoFinalize = autoFinalize;
        AutoDismiss = autoDismiss;
        Control = new JobControl(this);
        Group = new JobGroup();
        Group.Add(this);
    }

    public string Id { get; }

    public JobBody Body { get; }

    public string Type => Body.Type;

    /// <summary>Whether the job is a block job (shown by query-block-jobs, reported by BLOCK_JOB_* events).</summary>
    public bool IsBlockJob => Body.IsBlockJob;

    public JobControl Control { get; }

    /// <summary>The jobs this one ends with: itself alone, or a transaction's jobs (completion-mode grouped).</summary>
    public JobGroup Group { get; private set; }

    public bool AutoFinalize { get; }

    public bool AutoDismiss { get; }

    public JobStatus Status { get; private set; } = JobStatus.Undefined;

    /// <summary>Set by job-pause / block-job-pause and by a stop error policy; job-resume clears it.</summary>
    public bool UserPaused { get; private set; }

    public string? Error { get; private set; }

    public long CurrentProgress => Control.Offset;

    public long TotalProgress => Control.Length;

    /// <summary>Enters created: a transaction's job exists from its prepare on (QEMU creates it there).</summary>
    public void Create()
    {
        lock (_gate)
        {
            Transition(JobStatus.Created);
        }
    }

    /// <summary>
    /// Enters running (after created, unless <see cref="Create"/> did) and starts the body. A job
    /// started <paramref name="held"/> is set up (its point in time fixed) but pauses at once, as
    /// a QEMU job started inside its transaction's drained section does, until <see cref="Release"/>.
    /// </summary>
    public void Start(bool held = false)
    {
        lock (_gate)
        {
            if (Status == JobStatus.Undefined)
            {
                Transition(JobStatus.Created);
            }

            Transition(JobStatus.Running);
            if (held)
            {
                _held = true;
                Transition(JobStatus.Paused);
            }
        }

        Body.Attach(Control);
        if (!held)
        {
            Launch();
        }
    }

    /// <summary>Lets a job started held run (the end of its transaction's drained section).</summary>
    public void Release()
    {
        lock (_gate)
        {
            if (!_held)
            {
                return;
            }

            _held = false;
            if (Status == JobStatus.Paused)
            {
                Transition(JobStatus.Running);
            }
        }

        Launch();
    }

    /// <summary>
    /// A created job whose transaction failed before it started: aborting, concluded and (with
    /// auto-dismiss) gone, without a BLOCK_JOB_CANCELLED, as QEMU ends a job it never started.
    /// A job only reserved is forgotten.
    /// </summary>
    public void AbortUnstarted()
    {
        Group.Remove(this);
        bool created;
        lock (_gate)
        {
            created = Status == JobStatus.Created;
            if (created)
            {
                Error = CancelledError;
                Transition(JobStatus.Aborting);
            }
        }

        if (created)
        {
            Conclude(cancelled: true, started: false);
        }
        else
        {
            _dismissed(this);
        }
    }

    /// <summary>Makes this job, not yet started, end together with the others of <paramref name="group"/>.</summary>
    public void JoinGroup(JobGroup group)
    {
        Group.Remove(this);
        Group = group;
        group.Add(this);
    }

    /// <summary>Whether the body's work is over (QEMU's job_is_completed): waiting or later.</summary>
    internal bool WorkDone => _workDone.Task.IsCompleted;

    /// <summary>Completes once the body's work is over and the job is waiting or aborting.</summary>
    internal Task WorkFinished => _workDone.Task;

    private void Launch()
    {
        lock (_gate)
        {
            if (_launched)
            {
                return;
            }

            _launched = true;
        }

        _ = Task.Run(RunAsync);
    }

    /// <summary>Another job of the group failed: this one is cancelled for good, whether still at work or done with it.</summary>
    internal void CancelForGroup()
    {
        lock (_gate)
        {
            if (Status is JobStatus.Concluded or JobStatus.Null)
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

    /// <summary>
    /// A running job is told to stop (or, ready and not forced, to finish without pivot); a job
    /// done with its work (waiting or pending) and cancelled for good ends its whole group at once.
    /// </summary>
    public void Cancel(bool force)
    {
        Check(JobVerb.Cancel);
        lock (_gate)
        {
            UserPaused = false;
        }

        Control.Cancel(force);
        bool done;
        lock (_gate)
        {
            done = Status is JobStatus.Waiting or JobStatus.Pending;
        }

        if (done && Control.IsCancelled)
        {
            _ = Task.Run(() => Group.AbortAsync(this));
        }
    }

    /// <summary>job-finalize: finalises every job of the group (all pending by then), as QEMU does.</summary>
    public Task FinalizeAsync()
    {
        Check(JobVerb.Finalize);
        return Group.FinalizeAsync();
    }

    public void Dismiss()
    {
        lock (_gate)
        {
            Check(JobVerb.Dismiss);
            LeaveLocked();
        }
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

        bool succeeded;
        lock (_gate)
        {
            if (failure is not null and not OperationCanceledException)
            {
                Error = failure.Message;
            }

            succeeded = failure is null && !Control.IsCancelled;
            if (succeeded)
            {
                Transition(JobStatus.Waiting);
            }
            else
            {
                EnterAbortingLocked();
            }
        }

        _workDone.TrySetResult();
        if (succeeded)
        {
            await Group.SucceededAsync().ConfigureAwait(false);
        }
        else
        {
            await Group.AbortAsync(this).ConfigureAwait(false);
        }
    }

    /// <summary>Entered pending with its group (QEMU's job_transition_to_pending).</summary>
    internal void EnterPending()
    {
        lock (_gate)
        {
            Transition(JobStatus.Pending);
        }
    }

    /// <summary>QEMU's job_prepare: the body's commit, run for every job of the group before any is finalised; false when it failed.</summary>
    internal async Task<bool> PrepareAsync()
    {
        if (Error is not null || Control.IsCancelled)
        {
            return false;
        }

        try
        {
            await Body.CommitAsync().ConfigureAwait(false);
            _committed = true;
            return true;
        }
        catch (Exception e)
        {
            Error = e.Message;
            return false;
        }
    }

    /// <summary>
    /// QEMU's job_finalize_single: a job that failed or was cancelled aborts (a body already
    /// committed keeps its effects), then it is cleaned, reports its end, leaves its group and
    /// concludes. Runs once per job.
    /// </summary>
    internal async Task FinalizeSingleAsync()
    {
        if (Interlocked.Exchange(ref _finalizing, 1) != 0)
        {
            return;
        }

        bool failed;
        lock (_gate)
        {
            failed = Error is not null || Control.IsCancelled;
            if (failed)
            {
                EnterAbortingLocked();
            }
        }

        if (failed && !_committed)
        {
            try
            {
                await Body.AbortAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Error ??= e.Message;
            }
        }

        try
        {
            await Body.CleanAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Error ??= e.Message;
        }

        Group.Remove(this);
        Conclude(cancelled: Control.IsCancelled || Error == CancelledError, started: true);
    }

    /// <summary>
    /// QEMU's job_update_rc: a job cancelled without an error of its own ends with ECANCELED's
    /// words; it is aborting from then on (from paused or standby through running or ready).
    /// </summary>
    private void EnterAbortingLocked()
    {
        if (Error is null)
        {
            Error = CancelledError;
        }

        if (Status == JobStatus.Aborting)
        {
            return;
        }

        if (Status is JobStatus.Paused or JobStatus.Standby)
        {
            Transition(Status == JobStatus.Paused ? JobStatus.Running : JobStatus.Ready);
        }

        Transition(JobStatus.Aborting);
    }

    private void Conclude(bool cancelled, bool started)
    {
        lock (_gate)
        {
            if (started)
            {
                _events.Ended(this, cancelled);
            }

            Transition(JobStatus.Concluded);
            if (AutoDismiss)
            {
                LeaveLocked();
            }
        }
    }

    /// <summary>
    /// Leaves the registry, then enters null: a client that sees the null status may reuse the id at
    /// once (QEMU removes the job and reports it in one step of its main loop).
    /// </summary>
    private void LeaveLocked()
    {
        _dismissed(this);
        Transition(JobStatus.Null);
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
