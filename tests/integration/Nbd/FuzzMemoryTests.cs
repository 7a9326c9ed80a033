using System.Security.Cryptography;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Memory under hostile clients: 4,000 connections of fuzzed NBD traffic (Scripts/nbd_fuzz.py:
/// garbage handshakes, mutated options, mutated request streams with huge lengths and short payloads).
/// The daemon stays up and bounded, gives its memory back once the traffic stops, a client connected
/// throughout still reads correct data, and what the export serves afterwards equals the image file.
/// </summary>
public sealed class FuzzMemoryTests
{
    [Fact]
    public async Task FuzzedClientsLeaveTheDaemonUpBoundedAndCorrect()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        await File.WriteAllBytesAsync(image, RandomNumberGenerator.GetBytes(64 << 20));
        var sock = dir["s.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e,node-name=f,name=disk,writable=on");
        var uri = $"nbd+unix:///disk?socket={sock}";
        var fuzzer = Path.Combine(AppContext.BaseDirectory, "Nbd", "Scripts", "nbd_fuzz.py");

        // A well-behaved client stays connected through the whole run and reads again at the end what
        // the file holds then (fuzzed writes may have changed it). Its first read comes before any
        // fuzzed input, which may zero or trim the range it reads.
        var go = dir["go"];
        var ready = dir["ready"];
        var steady = Tool.PythonAsync($$"""
            import nbd, os, time
            expected = open("{{image}}", "rb").read()[1 << 20:(1 << 20) + 65536]
            h = nbd.NBD()
            h.connect_uri("{{uri}}")
            assert h.pread(65536, 1 << 20) == expected
            open("{{ready}}", "w").close()
            deadline = time.monotonic() + 170
            while not os.path.exists("{{go}}") and time.monotonic() < deadline:
                time.sleep(0.1)
            now = open("{{image}}", "rb").read()[1 << 20:(1 << 20) + 65536]
            assert h.pread(65536, 1 << 20) == now
            h.shutdown()
            """, TimeSpan.FromMinutes(3));
        for (var i = 0; i < 300 && !File.Exists(ready) && !steady.IsCompleted; i++)
        {
            await Task.Delay(50);
        }

        if (!File.Exists(ready))
        {
            (await steady).Check("the client connected throughout");
            Assert.Fail("the client connected throughout made no first read in 15 s");
        }

        var warm = await Tool.RunAsync("/usr/bin/python3", fuzzer, sock, "disk", "500", "1");
        warm.Check("fuzz warm-up");
        Assert.True(int.Parse(warm.Stdout.Trim()) > 0, "no fuzzed input reached transmission");
        var baseline = Rss(d.Pid, "VmRSS");

        (await Tool.RunAsync("/usr/bin/python3", fuzzer, sock, "disk", "3500", "2")).Check("fuzz");
        Assert.False(d.HasExited, $"the daemon died: {d.Stderr}");
        var peak = Rss(d.Pid, "VmHWM");
        Assert.True(peak < 96 << 10, $"peak RSS {peak} KiB under fuzzed input");

        // Once the traffic stops, the large buffers it took are given back within a few seconds.
        var settled = long.MaxValue;
        for (var i = 0; i < 50 && settled > baseline + (8 << 10); i++)
        {
            await Task.Delay(200);
            settled = Rss(d.Pid, "VmRSS");
        }

        Assert.True(settled <= baseline + (8 << 10), $"RSS {settled} KiB after the fuzz settled, {baseline} KiB before it");

        // The export still serves exactly the file (fuzzed writes changed both alike).
        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", image, uri)).Check("qemu-img compare");
        (await Tool.NbdshAsync(uri, "assert h.get_size() == 64 << 20")).Check("nbdsh after the fuzz");
        await File.WriteAllTextAsync(go, "");
        (await steady).Check("the client connected throughout");
        Assert.Equal(0, await d.StopAsync());
    }

    private static long Rss(int pid, string field) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
}
