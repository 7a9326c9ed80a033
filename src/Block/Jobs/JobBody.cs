using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// What a job does, apart from its lifecycle (QEMU's JobDriver): <see cref="RunAsync"/> does the
/// work and returns once done (or throws when it failed or was cancelled); then exactly one of
/// <see cref="CommitAsync"/> (success) or <see cref="AbortAsync"/> (failure, cancel) runs at
/// finalisation, and <see cref="CleanAsync"/> always runs last.
/// </summary>
public abstract class JobBody
{
    private BlockNodeUser[] _held = [];

    /// <summary>QAPI JobType: "mirror", "backup", "stream", "commit", "create".</summary>
    public abstract string Type { get; }

    /// <summary>Whether block-job-complete applies (mirror, active commit).</summary>
    public virtual bool CanComplete => false;

    /// <summary>Whether the job appears in query-block-jobs.</summary>
    public virtual bool IsBlockJob => true;

    /// <summary>
    /// Called synchronously when the job starts, before the command that created it returns: what
    /// must hold from that instant on (backup's point in time) is set up here.
    /// </summary>
    public virtual void Attach(JobControl control)
    {
    }

    public abstract Task RunAsync(JobControl control);

    /// <summary>Checks block-job-complete before it is accepted; throws with the reason it cannot.</summary>
    public virtual void CheckComplete(JobControl control)
    {
        if (!CanComplete)
        {
            throw new InvalidOperationException($"Job type '{Type}' does not support completion");
        }
    }

    public virtual ValueTask CommitAsync() => ValueTask.CompletedTask;

    public virtual ValueTask AbortAsync() => ValueTask.CompletedTask;

    public virtual ValueTask CleanAsync() => ValueTask.CompletedTask;

    /// <summary>
    /// The one place where a job becomes a user of its nodes, from the start of its work until
    /// <see cref="ReleaseNodes"/> in its clean-up: it reads <paramref name="source"/> and writes
    /// <paramref name="target"/>, which therefore cannot be made read-only meanwhile; as QEMU's
    /// jobs, it lets others do anything but resize them. A node in use is not closed.
    /// </summary>
    protected void TakeNodes(BlockNode source, BlockNode target)
    {
        ReleaseNodes();
        const BlockPermissions shares = BlockPermissions.All & ~BlockPermissions.Resize;
        _held =
        [
            source.TakeUser($"{Type} job", BlockPermissions.ConsistentRead, shares),
            target.TakeUser($"{Type} job", BlockPermissions.Write, shares),
        ];
    }

    /// <summary>Lets go of the nodes <see cref="TakeNodes"/> took; nothing when none are held.</summary>
    protected void ReleaseNodes()
    {
        foreach (var user in _held)
        {
            user.Dispose();
        }

        _held = [];
    }
}
