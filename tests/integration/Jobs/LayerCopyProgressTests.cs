using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// block-stream and intermediate block-commit report progress as qemu-storage-daemon does on the
/// same chain: len is the whole image from the start, and a finished job has offset = len, ranges
/// that needed no copy included.
/// </summary>
public sealed class LayerCopyProgressTests
{
    private const long ImageLength = 64L << 20;

    public static TheoryData<bool, string> Cases => new()
    {
        { false, "block-stream" },
        { true, "block-stream" },
        { false, "block-commit" },
        { true, "block-commit" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task LenIsTheImageAndOffsetReachesIt(bool qsd, string command)
    {
        using var dir = new TempDir();
        var c = await StreamChain.BuildAsync(dir, qsd);
        await using var d = c.Daemon;
        var args = command == "block-stream"
            ? new JsonObject { ["job-id"] = "j", ["device"] = "D", ["base-node"] = "A", ["speed"] = 1 }
            : new JsonObject { ["job-id"] = "j", ["device"] = "D", ["top-node"] = "C", ["base-node"] = "A", ["speed"] = 1 };
        await d.Qmp.ExecuteAsync(command, args);
        var running = await d.BlockJobAsync("j");
        Assert.Equal(ImageLength, running!["len"]!.GetValue<long>());
        Assert.InRange(running["offset"]!.GetValue<long>(), 0, ImageLength - 1);

        await d.Qmp.ExecuteAsync("block-job-set-speed", new JsonObject { ["device"] = "j", ["speed"] = 0 });
        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "j");
        Assert.Null(done["error"]);
        Assert.Equal(ImageLength, done["len"]!.GetValue<long>());
        Assert.Equal(ImageLength, done["offset"]!.GetValue<long>());

        // qemu-storage-daemon writes its cached metadata at exit.
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await c.AssertUnchangedAsync();
    }
}
