namespace ExportServer.Block.Jobs;

/// <summary>
/// A job that is <paramref name="inner"/> with more to do at some step: every step is the inner
/// job's, and a subclass overrides the ones it adds to (typically <see cref="JobBody.CleanAsync"/>).
/// </summary>
public abstract class WrappingJob(JobBody inner) : JobBody
{
    protected JobBody Inner => inner;

    public override string Type => inner.Type;

    public override bool CanComplete => inner.CanComplete;

    public override bool IsBlockJob => inner.IsBlockJob;

    public override void Attach(JobControl control) => inner.Attach(control);

    public override Task RunAsync(JobControl control) => inner.RunAsync(control);

    public override void CheckComplete(JobControl control) => inner.CheckComplete(control);

    public override ValueTask CommitAsync() => inner.CommitAsync();

    public override ValueTask AbortAsync() => inner.AbortAsync();

    public override ValueTask CleanAsync() => inner.CleanAsync();
}
