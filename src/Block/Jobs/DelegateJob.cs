namespace ExportServer.Block.Jobs;

/// <summary>A job whose work is one asynchronous call with no graph changes to commit (blockdev-create).</summary>
public sealed class DelegateJob(string type, Func<ValueTask> work) : JobBody
{
    public override string Type { get; } = type;

    public override bool IsBlockJob => false;

    public override async Task RunAsync(JobControl control)
    {
        control.SetLength(1);
        await work().ConfigureAwait(false);
        control.AddProgress(1);
    }
}
