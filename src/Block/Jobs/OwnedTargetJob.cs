using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// A job into a target node that its command opened (drive-backup): the target is closed once the
/// job has let go of it, as QEMU drops its last reference, unless something else uses it by then.
/// </summary>
public sealed class OwnedTargetJob(JobBody inner, BlockGraph graph, BlockNode target) : WrappingJob(inner)
{
    public override async ValueTask CleanAsync()
    {
        try
        {
            await Inner.CleanAsync().ConfigureAwait(false);
        }
        finally
        {
            if (target.UserCount == 0 && graph.TryFind(target.NodeName) is not null)
            {
                await graph.RemoveAsync(target.NodeName).ConfigureAwait(false);
            }
        }
    }
}
