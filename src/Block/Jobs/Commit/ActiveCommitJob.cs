using ExportServer.Block.Jobs.Mirror;

namespace ExportServer.Block.Jobs.Commit;

/// <summary>
/// Active commit: a <see cref="MirrorJob"/> of the active layer into its base (READY, then
/// block-job-complete pivots the users of the active layer to the base), followed by
/// <paramref name="afterClean"/> once the mirror has let go of its nodes: the committed layers
/// can only be closed then.
/// </summary>
public sealed class ActiveCommitJob(MirrorJob mirror, Func<ValueTask> afterClean) : JobBody
{
    public override string Type => mirror.Type;

    public override bool CanComplete => mirror.CanComplete;

    public override void Attach(JobControl control) => mirror.Attach(control);

    public override Task RunAsync(JobControl control) => mirror.RunAsync(control);

    public override void CheckComplete(JobControl control) => mirror.CheckComplete(control);

    public override ValueTask CommitAsync() => mirror.CommitAsync();

    public override ValueTask AbortAsync() => mirror.AbortAsync();

    public override async ValueTask CleanAsync()
    {
        await mirror.CleanAsync().ConfigureAwait(false);
        await afterClean().ConfigureAwait(false);
    }
}
