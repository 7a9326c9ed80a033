using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Every accepted NBD connection gets a send buffer larger than one 256 KiB READ reply: `ss -m`, run
/// while a libnbd client is connected, shows the daemon's end of the socket with a send buffer
/// (tb) of at least 2 MiB, where the kernel's default is 208 KiB.
/// </summary>
public sealed class SendBufferTests
{
    [Theory]
    [InlineData("unix")]
    [InlineData("tcp")]
    public async Task AcceptedConnectionsGetALargeSendBuffer(string transport)
    {
        using var dir = new TempDir();
        var port = FreePort.Get();
        var (address, uri) = transport == "unix"
            ? ($"addr.type=unix,addr.path={dir["s.sock"]}", $"nbd+unix:///n?socket={dir["s.sock"]}")
            : ($"addr.type=inet,addr.host=127.0.0.1,addr.port={port}", $"nbd://127.0.0.1:{port}/n");
        await using var d = await Daemon.StartAsync(dir, "--blockdev", "driver=null-co,node-name=n,size=1048576,read-zeroes=on",
            "--nbd-server", address, "--export", "type=nbd,id=e,node-name=n,name=n");

        var result = await Tool.NbdshAsync(uri, $$"""
            import subprocess
            assert h.pread(4096, 0) == bytes(4096)
            print(subprocess.run(["ss", "{{(transport == "unix" ? "-x" : "-t")}}", "-m", "-p", "-n"],
                                 capture_output=True, text=True, check=True).stdout)
            """);
        result.Check("nbdsh");

        // ss prints the process on the socket's line and its memory (skmem) there or on the next line.
        var lines = result.Stdout.Split('\n');
        var at = Array.FindIndex(lines, l => l.Contains($"pid={d.Pid},"));
        Assert.True(at >= 0, $"no socket of the daemon (pid {d.Pid}) in:\n{result.Stdout}");
        var text = lines[at] + (at + 1 < lines.Length ? lines[at + 1] : string.Empty);
        var match = Regex.Match(text, @"\btb(\d+)");
        Assert.True(match.Success, $"no send buffer size in: {text}");
        Assert.True(long.Parse(match.Groups[1].Value) >= 2 * 1024 * 1024, $"send buffer too small: {text}");
        Assert.Equal(0, await d.StopAsync());
    }
}
