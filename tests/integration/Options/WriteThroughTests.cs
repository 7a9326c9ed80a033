using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Options;

/// <summary>
/// The export option writethrough: an export over an NBD client node whose server (nbdkit with its
/// log filter) records the flags of every request it receives. With writethrough=on each write
/// arrives with FUA, as qemu-storage-daemon sends it; without, the client's plain write stays plain.
/// </summary>
public sealed class WriteThroughTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WritesReachTheServerBelowAsQemuStorageDaemonSendsThem(bool writeThrough)
    {
        var ours = await FlagsSeenBelowAsync(qsd: false, writeThrough);
        var theirs = await FlagsSeenBelowAsync(qsd: true, writeThrough);

        Assert.Equal(theirs, ours);
        Assert.Equal(writeThrough ? "fua=1" : "fua=0", ours.Write);
        Assert.Equal(writeThrough ? "fua=1" : "fua=0", ours.Zero);
    }

    private static async Task<(string Write, string Zero)> FlagsSeenBelowAsync(bool qsd, bool writeThrough)
    {
        using var dir = new TempDir();
        var log = dir["nbdkit.log"];
        await using var nbdkit = await Nbdkit.StartAsync(dir, dir["below.sock"], "--filter=log", "memory", "64M", $"logfile={log}");

        string[] args =
        [
            "--blockdev", $"driver=nbd,node-name=n,server.type=unix,server.path={dir["below.sock"]}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", $"type=nbd,id=e,node-name=n,name=n,writable=on,writethrough={(writeThrough ? "on" : "off")}",
        ];
        await using (var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args))
        {
            (await Tool.NbdshAsync($"nbd+unix:///n?socket={dir["s.sock"]}", """
                h.pwrite(b"\x01" * 65536, 1048576)
                h.zero(65536, 2097152)
                """)).Check("nbdsh");
            Assert.Equal(0, await d.StopAsync());
        }

        var text = await File.ReadAllTextAsync(log);
        return (Flag(text, "Write", "0x100000"), Flag(text, "Zero", "0x200000"));
    }

    private static string Flag(string log, string request, string offset)
    {
        var m = Regex.Match(log, $@" {request} id=\d+ offset={offset} count=0x10000 .*?(fua=\d)");
        Assert.True(m.Success, $"no {request} at {offset} in:\n{log}");
        return m.Groups[1].Value;
    }
}
