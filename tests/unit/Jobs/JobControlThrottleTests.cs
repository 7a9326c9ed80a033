using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>A job waiting on its speed limit wakes when kicked (block-job-set-speed), not when the old wait would end.</summary>
public sealed class JobControlThrottleTests
{
    [Fact]
    public async Task ANewSpeedEndsALongWait()
    {
        var control = new JobControl();
        control.Rate.Speed = 1;
        await control.ThrottleAsync(1024 * 1024);
        var waiting = control.ThrottleAsync(1024 * 1024).AsTask();
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        control.Rate.Speed = 0;
        control.Kick();
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
