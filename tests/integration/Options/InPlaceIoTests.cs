using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Options;

/// <summary>
/// The only request of the server's only connection waits for the device on the thread that read
/// it: strace shows the I/O threads' system calls (pread64, pwrite64, pwritev2, fdatasync) made by a
/// thread that is not one of them, and a node on io_uring submitting and waiting in one
/// io_uring_enter. With a second client connected the same requests go to the I/O threads or the
/// shared ring as before. Either way the data read back is the data written.
/// </summary>
public sealed class InPlaceIoTests
{
    [Theory]
    [InlineData("threads", "on", false)]
    [InlineData("threads", "on", true)]
    [InlineData("threads", "off", false)]
    [InlineData("threads", "off", true)]
    [InlineData("io_uring", "on", false)]
    [InlineData("io_uring", "on", true)]
    public async Task TheOnlyRequestWaitsOnTheThreadThatReadIt(string aio, string direct, bool secondClient)
    {
        using var dir = new TempDir();
        await using var d = await DirectIoTests.ServeEmptyImageAsync(dir, $"cache.direct={direct},aio={aio}");
        var uri = $"nbd+unix:///f?socket={dir["s.sock"]}";

        var strace = await Strace.AttachAsync(d.Pid, "io_uring_enter,pread64,pwrite64,pwritev2,fdatasync", dir["trace"], arguments: true);
        (await Tool.NbdshAsync(uri, $$"""
            other = None
            if {{(secondClient ? "True" : "False")}}:
                other = nbd.NBD()
                other.connect_uri("{{uri}}")
            for i in range(20):
                h.pwrite(bytes([i + 1]) * 4096, i << 16, nbd.CMD_FLAG_FUA)
            h.flush()
            for i in range(20):
                assert h.pread(4096, i << 16) == bytes([i + 1]) * 4096, i
            if other is not None:
                other.shutdown()
            """)).Check("nbdsh");
        var lines = await strace.StopAsync();
        var text = string.Join('\n', lines);

        if (aio == "io_uring")
        {
            var inPlace = Regex.IsMatch(text, @"io_uring_enter\(\d+, 1, 1, IORING_ENTER_GETEVENTS");
            Assert.True(inPlace != secondClient, $"submit-and-wait io_uring_enter {(inPlace ? "seen" : "not seen")}:\n{Excerpt(text)}");
        }
        else
        {
            // The thread of every device call, by name: the I/O threads are called block-io.
            var threads = lines.Select(l => Regex.Match(l, @"^(\d+) +(pread64|pwrite64|pwritev2|fdatasync)\("))
                .Where(m => m.Success)
                .Select(m => File.ReadAllText($"/proc/{d.Pid}/task/{m.Groups[1].Value}/comm").Trim())
                .ToList();
            Assert.True(threads.Count >= 21, $"{threads.Count} device calls traced:\n{Excerpt(text)}");
            var onIoThreads = threads.Count(t => t == "block-io");
            if (secondClient)
            {
                // The 20 FUA writes at least; buffered reads the page cache serves stay in place either way (RWF_NOWAIT).
                Assert.True(onIoThreads >= 20, $"{onIoThreads} of {threads.Count} calls on the I/O threads:\n{Excerpt(text)}");
            }
            else
            {
                Assert.True(onIoThreads == 0, $"{onIoThreads} of {threads.Count} calls on the I/O threads ({string.Join(", ", threads.Distinct())}):\n{Excerpt(text)}");
            }
        }

        Assert.Equal(0, await d.StopAsync());
    }

    private static string Excerpt(string text) => text[..Math.Min(text.Length, 3000)];
}
