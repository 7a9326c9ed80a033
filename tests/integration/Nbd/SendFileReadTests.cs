using System.Security.Cryptography;
using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// READ replies of 64 KiB and more whose data lies in the page cache of a raw file go out with
/// sendfile(2), straight from the file to the socket. libnbd reads a whole warm image through such
/// replies (one larger than the socket's send buffer, so sending stalls and resumes mid-reply;
/// many in flight; unaligned ones; small ones sent the usual way) with simple and with structured
/// replies, over unix and TCP, and gets the file's bytes; strace shows sendfile did the sending.
/// nbdcopy then copies the image, and it compares equal to the file. A reply whose client stops
/// reading fills the socket; the file is cut short meanwhile: the reply resumes, keeps its length,
/// and what lies past the new end comes as zeroes. Over TCP the header of such a reply is sent
/// flagged MSG_MORE, with the file's data straight after it, so the two leave as one segment.
/// </summary>
public sealed class SendFileReadTests
{
    private const int Size = 48 << 20;

    [Theory]
    [InlineData("unix", true)]
    [InlineData("unix", false)]
    [InlineData("tcp", true)]
    [InlineData("tcp", false)]
    public async Task ReadsFromTheCacheAreSentFromTheFileAndMatchIt(string transport, bool structured)
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        var data = new byte[Size];
        new Random(11).NextBytes(data);
        await File.WriteAllBytesAsync(image, data);
        var expected = Convert.ToHexStringLower(SHA256.HashData(data));

        var port = FreePort.Get();
        var (address, uri) = transport == "unix"
            ? ($"addr.type=unix,addr.path={dir["s.sock"]}", $"nbd+unix:///r?socket={dir["s.sock"]}")
            : ($"addr.type=inet,addr.host=127.0.0.1,addr.port={port}", $"nbd://127.0.0.1:{port}/r");
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image}",
            "--blockdev", "driver=raw,node-name=r,file=f",
            "--nbd-server", address, "--export", "type=nbd,id=e,node-name=r,name=r");

        var strace = await Strace.AttachAsync(d.Pid, "sendfile", dir["trace"]);
        var result = await Tool.PythonAsync($$"""
            import hashlib, nbd
            h = nbd.NBD()
            h.set_request_structured_replies({{(structured ? "True" : "False")}})
            h.connect_uri("{{uri}}")
            assert h.get_structured_replies_negotiated() == {{(structured ? "True" : "False")}}
            size = h.get_size()
            out = bytearray(size)
            # One reply far larger than the socket's send buffer.
            out[0:16 << 20] = h.pread(16 << 20, 0)
            # Small reads, below the size sent from the file, and unaligned large ones.
            for off in range(16 << 20, (16 << 20) + 65536, 4096):
                out[off:off + 4096] = h.pread(4096, off)
            odd = (17 << 20) + 12345
            out[(16 << 20) + 65536:odd] = h.pread(odd - (16 << 20) - 65536, (16 << 20) + 65536)
            out[odd:odd + 200001] = h.pread(200001, odd)
            # The rest in 1 MiB reads, sixteen in flight.
            commands = []
            off = odd + 200001
            while off < size:
                n = min(1 << 20, size - off)
                buf = nbd.Buffer(n)
                commands.append((h.aio_pread(buf, off), buf, off))
                off += n
                while h.aio_in_flight() >= 16:
                    h.poll(-1)
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for cookie, buf, at in commands:
                assert h.aio_command_completed(cookie)
                b = buf.to_bytearray()
                out[at:at + len(b)] = b
            print(hashlib.sha256(out).hexdigest())
            h.shutdown()
            """, TimeSpan.FromSeconds(60));
        result.Check("python3 (libnbd)");
        var lines = await strace.StopAsync();
        Assert.Equal(expected, result.Stdout.Trim());
        Assert.Contains(lines, l => l.Contains("sendfile(", StringComparison.Ordinal));

        (await Tool.RunAsync("nbdcopy", uri, dir["copy.raw"])).Check("nbdcopy");
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(dir["copy.raw"]))));
        Assert.Equal(0, await d.StopAsync());
    }

    [Fact]
    public async Task OverTcpTheHeaderOfAReplySentFromTheFileWaitsForItsData()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        var data = new byte[16 << 20];
        new Random(13).NextBytes(data);
        await File.WriteAllBytesAsync(image, data);
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image}",
            "--blockdev", "driver=raw,node-name=r,file=f",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port}", "--export", "type=nbd,id=e,node-name=r,name=r");

        var strace = await Strace.AttachAsync(d.Pid, "sendto,sendmsg,sendfile", dir["trace"], perThread: true);
        // One 256 KiB read at a time: the socket never fills, so each header is taken at once.
        var result = await Tool.PythonAsync($$"""
            import hashlib, nbd
            h = nbd.NBD()
            h.connect_uri("nbd://127.0.0.1:{{port}}/r")
            out = bytearray()
            for off in range(0, 16 << 20, 256 << 10):
                out += h.pread(256 << 10, off)
            print(hashlib.sha256(out).hexdigest())
            h.shutdown()
            """, TimeSpan.FromSeconds(60));
        result.Check("python3 (libnbd)");
        var threads = await strace.StopByThreadAsync();
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), result.Stdout.Trim());

        // sendto(fd, buf, length, flags, NULL, 0) = sent
        var send = new Regex(@"^sendto\(\d+, [^,]*, (\d+), ([A-Z_|]+), .*\)\s+=\s+(\d+)$");
        var headers = 0;
        foreach (var lines in threads)
        {
            for (var i = 0; i < lines.Length; i++)
            {
                var m = send.Match(lines[i]);
                if (!m.Success || !m.Groups[2].Value.Contains("MSG_MORE", StringComparison.Ordinal))
                {
                    continue;
                }

                headers++;
                Assert.Equal(m.Groups[1].Value, m.Groups[3].Value);
                // The data follows at once: a header left waiting would be held back by TCP.
                Assert.True(i + 1 < lines.Length && lines[i + 1].StartsWith("sendfile(", StringComparison.Ordinal),
                    $"no sendfile after the header:\n{string.Join('\n', lines.Skip(i).Take(3))}");
            }
        }

        // Every one of the 64 replies went from the file, each behind a header flagged MSG_MORE.
        var text = string.Join('\n', threads.SelectMany(t => t));
        Assert.True(headers >= 64, $"{headers} headers flagged MSG_MORE:\n{text[..Math.Min(text.Length, 4000)]}");
        Assert.Equal(0, await d.StopAsync());
    }

    [Fact]
    public async Task AReplyStalledByAFullSocketResumesAndAFileCutShortMeanwhileIsPaddedWithZeroes()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        var data = new byte[Size];
        new Random(12).NextBytes(data);
        await File.WriteAllBytesAsync(image, data);
        var expected = new byte[32 << 20];
        data.AsSpan(0, 16 << 20).CopyTo(expected);
        var sock = dir["s.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image}",
            "--blockdev", "driver=raw,node-name=r,file=f",
            "--nbd-server", $"addr.type=unix,addr.path={sock}", "--export", "type=nbd,id=e,node-name=r,name=r");

        var strace = await Strace.AttachAsync(d.Pid, "sendfile", dir["trace"]);
        var result = await Tool.PythonAsync($$"""
            import hashlib, nbd, os, time
            h = nbd.NBD()
            h.connect_uri("nbd+unix:///r?socket={{sock}}")
            buf = nbd.Buffer(32 << 20)
            cookie = h.aio_pread(buf, 0)
            # The request is out; nothing reads the reply for a while, so the socket fills up.
            time.sleep(1)
            os.truncate("{{image}}", 16 << 20)
            while not h.aio_command_completed(cookie):
                h.poll(-1)
            print(hashlib.sha256(buf.to_bytearray()).hexdigest())
            assert h.pread(4096, 4096) == open("{{image}}", "rb").read()[4096:8192]
            h.shutdown()
            """, TimeSpan.FromSeconds(60));
        result.Check("python3 (libnbd)");
        var lines = await strace.StopAsync();
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), result.Stdout.Trim());

        // The socket filled (sendfile said EAGAIN) and sending went on to the file's new end (sendfile said 0).
        var text = string.Join('\n', lines);
        Assert.Contains(lines, l => l.Contains("sendfile(", StringComparison.Ordinal) && l.Contains("EAGAIN", StringComparison.Ordinal));
        Assert.True(lines.Any(l => l.Contains("sendfile(", StringComparison.Ordinal) && l.TrimEnd().EndsWith("= 0", StringComparison.Ordinal)), $"no sendfile at the end of the file:\n{text}");
        Assert.Equal(0, await d.StopAsync());
    }
}
