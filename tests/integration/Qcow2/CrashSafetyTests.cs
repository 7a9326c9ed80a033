using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// kill -9 of the daemon while a client writes into a qcow2 image (with and without a backing
/// file): `qemu-img check` must find no corruption (leaked clusters are allowed) and every write
/// acknowledged with FUA, or followed by an acknowledged flush, must read back.
/// </summary>
public sealed class CrashSafetyTests
{
    // The writer: each write goes to a fresh slot (so acknowledged data is never overwritten),
    // mixes sizes within and across clusters and partial clusters, and logs what is durable.
    private const string Writer = """
        import nbd, random, sys
        uri, seed, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        rnd = random.Random(seed)
        h = nbd.NBD(); h.connect_uri(uri)
        slots = list(range(start, start + 4000)); rnd.shuffle(slots)
        pending = []
        for n, slot in enumerate(slots):
            off = slot * 196608 + rnd.choice([0, 512, 4096, 65536 - 1024])
            size = rnd.choice([512, 4096, 65536, 100000, 131072])
            pat = rnd.randrange(1, 255)
            if n % 7 == 0:
                h.pwrite(bytes([pat]) * size, off, nbd.CMD_FLAG_FUA)
                print(f"{off} {size} {pat}", flush=True)
            else:
                h.pwrite(bytes([pat]) * size, off)
                pending.append(f"{off} {size} {pat}")
                if n % 5 == 0:
                    h.flush()
                    for p in pending: print(p, flush=True)
                    pending.clear()
        """;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task KilledWriterLeavesACleanImageWithEveryDurableWrite(bool withBacking)
    {
        using var dir = new TempDir();
        var image = dir["top.qcow2"];
        if (withBacking)
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], "4G")).Check("base");
            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0xbb 0 512M", dir["base.qcow2"])).Check("fill base");
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-b", dir["base.qcow2"], "-F", "qcow2", image)).Check("overlay");
        }
        else
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "4G")).Check("create");
        }

        await File.WriteAllTextAsync(dir["writer.py"], Writer);
        var durable = new List<(long Offset, int Size, int Pattern)>();
        var rnd = new Random(withBacking ? 7 : 3);
        for (var round = 0; round < 5; round++)
        {
            var uri = $"nbd+unix:///disk?socket={dir["s.sock"]}";
            var d = await Daemon.StartAsync(dir,
                "--blockdev", $"driver=file,node-name=f0,filename={image}",
                "--blockdev", "driver=qcow2,node-name=q0,file=f0",
                "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
                "--export", "type=nbd,id=e0,node-name=q0,name=disk,writable=on");
            var log = dir[$"log{round}.txt"];
            var writer = Tool.ShAsync($"/usr/bin/python3 {dir["writer.py"]} '{uri}' {round} {round * 4000} > {log} 2>/dev/null", TimeSpan.FromMinutes(2));
            await Task.Delay(300 + rnd.Next(1200));
            d.Signal(9);
            await d.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await d.DisposeAsync();
            await writer;
            foreach (var line in (await File.ReadAllLinesAsync(log)).Where(l => l.Length > 0))
            {
                var f = line.Split(' ');
                durable.Add((long.Parse(f[0]), int.Parse(f[1]), int.Parse(f[2])));
            }

            var check = await Tool.RunAsync("qemu-img", "check", "--output=json", image);
            Assert.True(check.ExitCode is 0 or 3, $"round {round}: qemu-img check exit {check.ExitCode}\n{check.Stdout}{check.Stderr}");
            var report = JsonDocument.Parse(check.Stdout).RootElement;
            Assert.False(report.TryGetProperty("corruptions", out var c) && c.GetInt32() > 0, check.Stdout);
        }

        Assert.True(durable.Count > 100, $"only {durable.Count} durable writes before the kills");
        var reads = durable.SelectMany(w => new[] { "-c", $"read -q -P {w.Pattern} {w.Offset} {w.Size}" }).ToList();
        for (var i = 0; i < reads.Count; i += 400)
        {
            var r = await Tool.RunAsync("qemu-io", ["-f", "qcow2", "-r", .. reads.Skip(i).Take(400), image]);
            Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("Pattern verification failed"), r.Stdout + r.Stderr);
        }
    }
}
