using Xunit;

namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// Rounds of kill -9 of a daemon while a libnbd client writes into its export: after each round the
/// image must pass the format's check, and at the end every write that was durable (acknowledged
/// with FUA, or followed by an acknowledged flush) must read back.
/// </summary>
internal static class KillDuringWrites
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

    /// <summary>
    /// Runs <paramref name="rounds"/> rounds against the daemons <paramref name="start"/> makes (serving
    /// <paramref name="image"/> writable as "disk" on <paramref name="uri"/>); <paramref name="check"/>
    /// asserts the image is sound after each kill. Then reads every durable write back with qemu-io.
    /// </summary>
    public static async Task RunAsync(TempDir dir, string image, string format, string uri, Func<Task<Daemon>> start, int rounds, int seed, Func<int, Task> check)
    {
        await File.WriteAllTextAsync(dir["writer.py"], Writer);
        var durable = new List<(long Offset, int Size, int Pattern)>();
        var rnd = new Random(seed);
        for (var round = 0; round < rounds; round++)
        {
            var d = await start();
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

            await check(round);
        }

        Assert.True(durable.Count > 100, $"only {durable.Count} durable writes before the kills");
        var reads = durable.SelectMany(w => new[] { "-c", $"read -q -P {w.Pattern} {w.Offset} {w.Size}" }).ToList();
        for (var i = 0; i < reads.Count; i += 400)
        {
            var r = await Tool.RunAsync("qemu-io", ["-f", format, "-r", .. reads.Skip(i).Take(400), image]);
            Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("Pattern verification failed"), r.Stdout + r.Stderr);
        }
    }
}
