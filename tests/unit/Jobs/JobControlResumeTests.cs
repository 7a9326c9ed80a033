using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>A job waiting at a pause point is reported resumed before Resume (or Cancel) returns, not whenever its body wakes.</summary>
public sealed class JobControlResumeTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TheResumeIsReportedBeforeTheCallReturns(bool cancel)
    {
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        control.Pause();
        var body = Task.Run(async () => await control.PausePointAsync());
        await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(control.IsPausedAtPoint);
        Assert.Equal(0, observer.ResumedCount);
        if (cancel)
        {
            control.Cancel(force: true);
        }
        else
        {
            control.Resume();
        }

        Assert.Equal(1, observer.ResumedCount);
        Assert.False(control.IsPausedAtPoint);
        if (cancel)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => body);
        }
        else
        {
            await body;
        }

        Assert.Equal(1, observer.ResumedCount);
    }
}
