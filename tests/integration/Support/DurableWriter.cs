using Xunit;

namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// A libnbd client that writes patterns into fresh slots of an export until it is cut off, logging
/// each write once it is durable (sent with FUA, or followed by an acknowledged flush); then the
/// durable writes are read back from the image with qemu-io. For kill -9 tests of format drivers.
/// Optionally it also logs each write before sending it, so a test can tell old, new and garbage apart.
/// </summary>
internal sealed class DurableWriter
{
    // Slots come from range(first, stop, step), shuffled; no slot is written twice, so what was
    // acknowledged is never overwritten.
    private const string Script = """
        import nbd, random, sys
        uri, seed, first, stop, step, slot = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7])
        offsets, sizes = [int(x) for x in sys.argv[7].split(",")], [int(x) for x in sys.argv[8].split(",")]
        tries = open(sys.argv[9], "w") if len(sys.argv) > 9 else None
        rnd = random.Random(seed)
        h = nbd.NBD(); h.connect_uri(uri)
        slots = list(range(first, stop, step)); rnd.shuffle(slots)
        pending = []
        for n, s in enumerate(slots):
            off = s * slot + rnd.choice(offsets)
            size = rnd.choice(sizes)
            pat = rnd.randrange(1, 255)
            if tries: print(f"{off} {size} {pat}", file=tries, flush=True)
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

    private readonly TempDir _dir;
    private readonly long _slotSize;
    private readonly string _offsets;
    private readonly string _sizes;
    private readonly bool _logAttempts;

    /// <summary>A writer into slots of <paramref name="slotSize"/> bytes, at one of <paramref name="offsets"/> in its slot, of one of <paramref name="sizes"/>.</summary>
    public DurableWriter(TempDir dir, long slotSize, int[] offsets, int[] sizes, bool logAttempts = false)
    {
        _logAttempts = logAttempts;
        _dir = dir;
        _slotSize = slotSize;
        _offsets = string.Join(',', offsets);
        _sizes = string.Join(',', sizes);
        File.WriteAllText(dir["writer.py"], Script);
    }

    /// <summary>The writes known durable so far, over every round.</summary>
    public List<(long Offset, int Size, int Pattern)> Durable { get; } = new();

    /// <summary>Every write sent (or about to be sent) so far, when attempts are logged.</summary>
    public List<(long Offset, int Size, int Pattern)> Attempted { get; } = new();

    /// <summary>Starts round <paramref name="round"/> against <paramref name="uri"/> over slots range(first, stop, step).</summary>
    public Task<Tool.Result> StartRound(string uri, int round, long first, long stop, long step) =>
        Tool.ShAsync(
            $"/usr/bin/python3 {_dir["writer.py"]} '{uri}' {round} {first} {stop} {step} {_slotSize} {_offsets} {_sizes} {(_logAttempts ? _dir[$"try{round}.txt"] : string.Empty)} > {_dir[$"log{round}.txt"]} 2>>{_dir["writer.err"]}",
            TimeSpan.FromMinutes(2));

    /// <summary>
    /// Waits until the writer of <paramref name="round"/> has a durable write (or has ended), so a
    /// kill lands while it writes however slowly the machine starts it.
    /// </summary>
    public async Task WaitUntilWritingAsync(Task<Tool.Result> writer, int round)
    {
        var log = _dir[$"log{round}.txt"];
        for (var i = 0; i < 6000 && !writer.IsCompleted; i++)
        {
            if (File.Exists(log) && new FileInfo(log).Length > 0)
            {
                return;
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits for the cut-off writer of <paramref name="round"/> and adds what it logged as durable.</summary>
    public async Task EndRoundAsync(Task<Tool.Result> writer, int round)
    {
        await writer;
        Durable.AddRange(await ReadLogAsync(_dir[$"log{round}.txt"]));
        if (_logAttempts)
        {
            Attempted.AddRange(await ReadLogAsync(_dir[$"try{round}.txt"]));
        }
    }

    private static async Task<IEnumerable<(long Offset, int Size, int Pattern)>> ReadLogAsync(string path) =>
        (await File.ReadAllLinesAsync(path)).Where(l => l.Length > 0).Select(line =>
        {
            var f = line.Split(' ');
            return (long.Parse(f[0]), int.Parse(f[1]), int.Parse(f[2]));
        });

    /// <summary>Every durable write reads back from <paramref name="image"/>, opened by qemu-io as <paramref name="format"/>.</summary>
    public async Task VerifyAsync(string format, string image, int atLeast)
    {
        var errors = File.Exists(_dir["writer.err"]) ? await File.ReadAllTextAsync(_dir["writer.err"]) : string.Empty;
        Assert.True(Durable.Count > atLeast, $"only {Durable.Count} durable writes before the kills: {errors}");
        var reads = Durable.SelectMany(w => new[] { "-c", $"read -q -P {w.Pattern} {w.Offset} {w.Size}" }).ToList();
        for (var i = 0; i < reads.Count; i += 400)
        {
            var r = await Tool.RunAsync("qemu-io", ["-f", format, "-r", "-U", .. reads.Skip(i).Take(400), image]);
            Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("Pattern verification failed"), r.Stdout + r.Stderr);
        }
    }
}
