using ExportServer.Block.Jobs.Mirror;

namespace ExportServer.Block.Jobs.Commit;

/// <summary>
/// Active commit: a <see cref="MirrorJob"/> of the active layer into its base (READY, then
/// block-job-complete pivots the users of the active layer to the base), followed by
/// <paramref name="afterClean"/> once the mirror has let go of its nodes: the committed layers
/// can only be closed then.
/// </summary>
public sealed class ActiveCommitJob(MirrorJob mirror, Func<ValueTask> afterClean) : WrappingJob(mirror)
{
    public override async ValueTask CleanAsync()
    {
        await Inner.CleanAsync().ConfigureAwait(false);
        await afterClean().ConfigureAwait(false);
    }
}
