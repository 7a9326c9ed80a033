namespace ExportServer.Block.Jobs;

/// <summary>
/// A job whose <paramref name="filter"/> sits above its source while it runs: the job itself is
/// <paramref name="inner"/>; the filter is taken out when the job is cleaned up, before the inner
/// job lets go of its nodes (so layers the job drops are no longer held by the filter).
/// </summary>
public sealed class FilteredJob(JobBody inner, JobFilter filter) : WrappingJob(inner)
{
    public override async ValueTask CleanAsync()
    {
        try
        {
            await filter.RemoveAsync().ConfigureAwait(false);
        }
        finally
        {
            await Inner.CleanAsync().ConfigureAwait(false);
        }
    }
}
