using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Busy-polling for the next request: a lone connection sending one request at a time makes the
/// daemon poll its socket between requests, watched with strace: non-blocking receives that find
/// nothing (a plain connection polls with the receive itself, so the one that finds a request has
/// taken it in), or zero-timeout poll calls. With
/// EXPORT_SERVER_POLL_MAX_NS=0 it never polls, nor does a connection that is not alone, nor one to an
/// export on an iothread. strace slows every system call, so waits take far longer than the default
/// 200 µs maximum: the cases that should poll allow 10 ms.
/// </summary>
public sealed class RequestPollingTests
{
    [Theory]
    [InlineData("alone", true)]
    [InlineData("off", false)]
    [InlineData("second-connection", false)]
    [InlineData("iothread", false)]
    public async Task ALoneConnectionPollsUnlessPollingIsOff(string setup, bool polls)
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        await File.WriteAllBytesAsync(image, new byte[1 << 20]);
        var export = "type=nbd,id=e,node-name=f,name=f" + (setup == "iothread" ? ",iothread=io0" : "");
        var environment = new Dictionary<string, string> { ["EXPORT_SERVER_POLL_MAX_NS"] = setup == "off" ? "0" : "10000000" };
        await using var d = await Daemon.StartAsync(Daemon.ExportServerPath, dir,
            ["--object", "iothread,id=io0", "--blockdev", $"driver=file,node-name=f,filename={image}",
             "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}", "--export", export], environment);
        var uri = $"nbd+unix:///f?socket={dir["s.sock"]}";

        var strace = await Strace.AttachAsync(d.Pid, "poll,ppoll,recvfrom", dir["trace"], arguments: true);

        // Back-to-back reads from one client; with "second-connection" another client is connected
        // before it and leaves after it, so the reading connection is never alone.
        (await Tool.PythonAsync($"""
            import nbd
            other = None
            if {(setup == "second-connection" ? "True" : "False")}:
                other = nbd.NBD()
                other.connect_uri("{uri}")
            h = nbd.NBD()
            h.connect_uri("{uri}")
            for i in range(2000):
                h.pread(512, (i % 256) * 4096)
            h.shutdown()
            if other is not None:
                other.shutdown()
            """)).Check("libnbd reads");

        var text = string.Join('\n', await strace.StopAsync());
        var zeroTimeoutPolls = Regex.Matches(text, @"\bpoll\(\[\{fd=\d+, events=POLLIN[^\]]*\], 1, 0\)").Count +
            Regex.Matches(text, @"\brecvfrom\(\d+, .*MSG_DONTWAIT.*\) = -1 EAGAIN").Count;
        var receivedWhilePolling = Regex.Matches(text, @"\brecvfrom\(\d+, .*MSG_DONTWAIT.*\) = [1-9]\d*$", RegexOptions.Multiline).Count;
        var excerpt = text[..Math.Min(text.Length, 4000)];
        if (polls)
        {
            Assert.True(zeroTimeoutPolls > 0, $"no poll of the socket in:\n{excerpt}");
            Assert.True(receivedWhilePolling > 0, $"no request taken in by a polling receive in:\n{excerpt}");
        }
        else
        {
            Assert.True(zeroTimeoutPolls == 0, $"{zeroTimeoutPolls} polls:\n{excerpt}");
            Assert.True(receivedWhilePolling == 0, $"{receivedWhilePolling} requests taken in by polling receives:\n{excerpt}");
        }

        Assert.Equal(0, await d.StopAsync());
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("32k")]
    [InlineData("")]
    public async Task ABadPollMaximumIsRefusedAtStart(string value)
    {
        using var dir = new TempDir();
        await using var d = Daemon.Launch(Daemon.ExportServerPath,
            ["--blockdev", "driver=null-co,node-name=n", "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}"],
            new Dictionary<string, string> { ["EXPORT_SERVER_POLL_MAX_NS"] = value });
        Assert.Equal(1, await d.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"EXPORT_SERVER_POLL_MAX_NS value must be in range [0, 9223372036854775807], not '{value}'", d.Stderr);
        Assert.False(File.Exists(dir["s.sock"]), "the daemon listened before refusing");
    }
}
