using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Options;

/// <summary>
/// FUA on a file node, as QEMU 10's file-posix does it: a write flagged FUA is one pwritev2 with
/// RWF_DSYNC and no fdatasync; a zero write flagged FUA is fallocate followed by fdatasync; plain
/// writes carry no RWF_DSYNC. With cache.no-flush=on neither syncs. The daemon's system calls are
/// watched with strace while nbdsh sends the requests.
/// </summary>
public sealed class NativeFuaTests
{
    private const long FuaWrite = 1 << 20;
    private const long PlainWrite = 2 << 20;
    private const long FuaZero = 3 << 20;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FuaWritesAreSyncedByTheWriteItself(bool noFlush)
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        await using (var f = File.Create(image))
        {
            f.SetLength(8 << 20);
        }

        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image},cache.no-flush={(noFlush ? "on" : "off")}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e,node-name=f,name=f,writable=on");

        var strace = await Strace.AttachAsync(d.Pid, "pwrite64,pwritev,pwritev2,fdatasync,fsync,fallocate", dir["trace"]);

        (await Tool.NbdshAsync($"nbd+unix:///f?socket={dir["s.sock"]}", $"""
            h.pwrite(b"\x01" * 4096, {FuaWrite}, nbd.CMD_FLAG_FUA)
            h.pwrite(b"\x02" * 4096, {PlainWrite})
            h.zero(65536, {FuaZero}, nbd.CMD_FLAG_FUA)
            assert h.pread(4096, {FuaWrite}) == b"\x01" * 4096
            assert h.pread(4096, {PlainWrite}) == b"\x02" * 4096
            """)).Check("nbdsh");

        var lines = await strace.StopAsync();
        var text = string.Join('\n', lines);

        var fuaWrite = Index(lines, $@"pwritev2\(\d+, .*, {FuaWrite}, RWF_DSYNC\b");
        var plainWrite = Index(lines, $@"(pwrite64|pwritev2?)\(\d+, .*, {PlainWrite}\b");
        var zero = Index(lines, $@"fallocate\(\d+, [A-Z_|]+, {FuaZero}, 65536\b");
        var syncs = lines.Select((l, i) => (l, i)).Where(x => Regex.IsMatch(x.l, @"\bf(data)?sync\(")).Select(x => x.i).ToList();

        Assert.True(plainWrite >= 0, $"no plain write at {PlainWrite}:\n{text}");
        Assert.True(zero >= 0, $"no fallocate at {FuaZero}:\n{text}");
        if (noFlush)
        {
            Assert.True(fuaWrite < 0, $"cache.no-flush=on, yet a write went with RWF_DSYNC:\n{text}");
            Assert.Empty(syncs);
        }
        else
        {
            Assert.True(fuaWrite >= 0, $"the FUA write at {FuaWrite} did not go with RWF_DSYNC:\n{text}");
            Assert.DoesNotContain(syncs, i => i < zero);
            Assert.Contains(syncs, i => i > zero);
        }

        Assert.DoesNotMatch($@"{PlainWrite}, RWF_DSYNC", text);
        Assert.Equal(0, await d.StopAsync());
    }

    private static int Index(List<string> lines, string pattern) => lines.FindIndex(l => Regex.IsMatch(l, pattern));
}
