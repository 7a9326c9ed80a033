using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary><see cref="JobControl.HandleErrorAsync"/> under the report policy, as QEMU's copy loops report.</summary>
public sealed class JobControlErrorTests
{
    [Fact]
    public async Task TheFirstReportedFailureIsTheOnlyEventAndEndsTheJobWithItsErrnoText()
    {
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var failures = new List<BlockException>();
        foreach (var message in new[] { "qcow2: Image is corrupt", "another request failed" })
        {
            failures.Add(await Assert.ThrowsAsync<BlockException>(async () =>
                await control.HandleErrorAsync(ErrorPolicy.Report, read: true, BlockException.Io(message))));
        }

        Assert.Equal([(true, ErrorAction.Report)], observer.Errors);
        Assert.All(failures, f => Assert.Equal("Input/output error", f.Message));
        Assert.All(failures, f => Assert.Equal(Errno.EIO, f.Errno));
    }

    [Fact]
    public async Task AStoppedJobReportsEachFailure()
    {
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        for (var i = 0; i < 2; i++)
        {
            var handled = control.HandleErrorAsync(ErrorPolicy.Stop, read: false, BlockException.Io("write failed")).AsTask();
            await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(30));
            control.Resume();
            Assert.Equal(ErrorAction.Stop, await handled.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        Assert.Equal([(false, ErrorAction.Stop), (false, ErrorAction.Stop)], observer.Errors);
    }
}
