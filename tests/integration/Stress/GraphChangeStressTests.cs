using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Microsoft.Win32.SafeHandles;
using Xunit;

namespace ExportServer.IntegrationTests.Stress;

/// <summary>
/// Graph changes under load. A libnbd client (eight writes in flight) and two writers on the FUSE
/// mount of the same node stamp every 4 KiB block they write with its offset and a generation,
/// the whole time, while QMP takes a snapshot, reopens the backing layer read-only, commits the
/// overlay back, and mirrors the chain to a new image, pivoting the exports each time. No request
/// may fail, every block must hold its last acknowledged generation (read back through NBD, through
/// the mount, and from the final image after the daemon stopped), and every layer must be clean.
/// </summary>
public sealed class GraphChangeStressTests
{
    private const int BlockSize = 4096;
    private const int Blocks = 16384; // 64 MiB: the first half is written over NBD, the second over FUSE
    private const int Rounds = 3;

    // Writes blocks [start, start+count) with eight requests in flight (never two on one block),
    // until the stop file appears; then reads every block of its range back and checks it.
    private const string NbdWriter = """
import json, os, random, struct, sys
import nbd
uri, start, count, stop, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def stamp(off, g):
    return struct.pack('<QQ', off, g) * 256
h = nbd.NBD()
h.connect_uri(uri)
rnd = random.Random(7)
gens, busy, inflight = {}, set(), {}
gen = writes = 0
while True:
    stopping = os.path.exists(stop)
    if stopping and not inflight:
        break
    while not stopping and len(inflight) < 8:
        b = start + rnd.randrange(count)
        if b in busy:
            continue
        gen += 1
        buf = nbd.Buffer.from_bytearray(bytearray(stamp(b * 4096, gen)))
        flags = nbd.CMD_FLAG_FUA if gen % 37 == 0 else 0
        c = h.aio_pwrite(buf, b * 4096, flags=flags)
        inflight[c] = (b, gen, buf)
        busy.add(b)
    # A synchronous flush runs the same state machine and may have taken every reply in flight:
    # then there is nothing left to wait for, and poll(-1) would wait for ever.
    if h.aio_in_flight() > 0:
        h.poll(-1)
    for c in list(inflight):
        if h.aio_command_completed(c):
            b, g, _ = inflight.pop(c)
            busy.discard(b)
            gens[b] = g
            writes += 1
            if writes % 256 == 0:
                h.flush()
bad = [b for b in range(start, start + count)
       if h.pread(4096, b * 4096) != (stamp(b * 4096, gens[b]) if b in gens else bytes(4096))]
with open(out, 'w') as f:
    json.dump(gens, f)
h.shutdown()
print(json.dumps({'writes': writes, 'bad': bad[:10], 'nbad': len(bad)}))
sys.exit(1 if bad else 0)
""";

    [Fact]
    public async Task WritersOverNbdAndFuseSeeNoFailureWhileTheGraphChanges()
    {
        using var dir = new TempDir();
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "64M");
        var mount = dir["mnt.raw"];
        await File.WriteAllBytesAsync(mount, []);
        await using var d = await JobDaemon.StartAsync(dir, "d", qsd: false,
            "--blockdev", $"driver=qcow2,node-name=base,file.driver=file,file.filename={dir["base.qcow2"]}",
            "--export", "type=nbd,id=nbd0,node-name=base,name=disk,writable=on",
            "--export", $"type=fuse,id=fuse0,node-name=base,mountpoint={mount},writable=on");

        var stop = dir["stop"];
        var nbdGensFile = dir["nbd-gens.json"];
        var nbdWriter = Tool.RunAsync("/usr/bin/python3",
            ["-c", NbdWriter, d.NbdUri("disk"), "0", (Blocks / 2).ToString(), stop, nbdGensFile], TimeSpan.FromMinutes(5));

        var fuseGens = new long[Blocks];
        using var cts = new CancellationTokenSource();
        var mounted = new FileStream(mount, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 1);
        var fuse = mounted.SafeFileHandle;
        var fuseWriters = Enumerable.Range(0, 2).Select(w => Task.Factory.StartNew(
            () => WriteThroughMount(fuse, w, fuseGens, cts.Token), TaskCreationOptions.LongRunning)).ToArray();

        var top = "base";
        for (var i = 0; i < Rounds; i++)
        {
            top = await ChangeGraphAsync(d, dir, top, i);
        }

        await File.WriteAllTextAsync(stop, string.Empty);
        cts.Cancel();
        await Task.WhenAll(fuseWriters);
        mounted.Flush(flushToDisk: true);

        var nbdResult = await nbdWriter;
        Assert.True(nbdResult.ExitCode == 0, $"NBD writer: {nbdResult.Stdout}{nbdResult.Stderr}");
        Assert.Contains("\"nbad\": 0", nbdResult.Stdout, StringComparison.Ordinal);

        // The FUSE half read back through the mount while the daemon still serves it.
        var block = new byte[BlockSize];
        for (var b = Blocks / 2; b < Blocks; b++)
        {
            Assert.Equal(BlockSize, RandomAccess.Read(fuse, block, (long)b * BlockSize));
            AssertStamp(block, b, fuseGens[b], "FUSE read");
        }

        var exported = (JsonArray)await d.Qmp.ExecuteAsync("query-block-exports");
        Assert.All(exported, e => Assert.Equal(top, e!["node-name"]!.GetValue<string>()));
        var topFile = await FileOfAsync(d, top);
        await mounted.DisposeAsync();
        Assert.Equal(0, await d.Process.StopAsync());

        var nbdGens = JsonNode.Parse(await File.ReadAllTextAsync(nbdGensFile))!.AsObject();
        foreach (var (key, value) in nbdGens)
        {
            fuseGens[int.Parse(key)] = value!.GetValue<long>();
        }

        var raw = dir["final.raw"];
        await JobDaemon.QemuImgAsync("convert", "-U", "-O", "raw", topFile, raw);
        var image = await File.ReadAllBytesAsync(raw);
        for (var b = 0; b < Blocks; b++)
        {
            AssertStamp(image.AsSpan(b * BlockSize, BlockSize), b, fuseGens[b], "final image");
        }

        foreach (var layer in Directory.GetFiles(dir.Path, "*.qcow2"))
        {
            var check = await Tool.RunAsync("qemu-img", "check", "-U", layer);
            Assert.True(check.ExitCode == 0, $"qemu-img check {layer}: {check.Stdout}{check.Stderr}");
        }
    }

    /// <summary>One round of graph changes on the exported node; returns the node exported afterwards.</summary>
    private static async Task<string> ChangeGraphAsync(JobDaemon d, TempDir dir, string top, int round)
    {
        var overlay = $"snap{round}";
        await d.Qmp.ExecuteAsync("blockdev-snapshot-sync", new JsonObject
        {
            ["node-name"] = top, ["snapshot-file"] = dir[overlay + ".qcow2"], ["snapshot-node-name"] = overlay, ["format"] = "qcow2",
        });
        await Task.Delay(200);

        foreach (var readOnly in new[] { false, true })
        {
            await d.Qmp.ExecuteAsync("blockdev-reopen", new JsonObject
            {
                ["options"] = new JsonArray(new JsonObject { ["driver"] = "qcow2", ["node-name"] = top, ["read-only"] = readOnly }),
            });
        }

        var commit = $"commit{round}";
        await d.Qmp.ExecuteAsync("block-commit", new JsonObject { ["job-id"] = commit, ["device"] = overlay });
        await CompleteAsync(d, commit);

        var mirror = $"mirror{round}";
        await d.Qmp.ExecuteAsync("drive-mirror", new JsonObject
        {
            ["job-id"] = mirror, ["device"] = top, ["target"] = dir[mirror + ".qcow2"], ["format"] = "qcow2",
            ["sync"] = "full", ["node-name"] = mirror,
        });
        await CompleteAsync(d, mirror);
        return mirror;
    }

    /// <summary>Waits for the job to be ready, completes it under load and waits for its pivot.</summary>
    private static async Task CompleteAsync(JobDaemon d, string job)
    {
        await d.WaitJobEventAsync("BLOCK_JOB_READY", job);
        await Task.Delay(200);
        await d.Qmp.ExecuteAsync("job-complete", new JsonObject { ["id"] = job });
        JsonObject completed;
        try
        {
            completed = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", job);
        }
        catch (OperationCanceledException)
        {
            var jobs = await d.Qmp.ExecuteAsync("query-block-jobs");
            throw new Xunit.Sdk.XunitException($"{job} did not complete under load: {jobs.ToJsonString()}");
        }

        Assert.Null(completed["error"]);
    }

    private static async Task<string> FileOfAsync(JobDaemon d, string node)
    {
        var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
        return nodes.Single(n => n!["node-name"]!.GetValue<string>() == node)!["file"]!.GetValue<string>();
    }

    /// <summary>Writes stamped blocks of the FUSE half (every other block for writer <paramref name="w"/>) until cancelled.</summary>
    private static void WriteThroughMount(SafeFileHandle file, int w, long[] gens, CancellationToken token)
    {
        var rnd = new Random(100 + w);
        var buffer = new byte[BlockSize];
        long gen = w * (1L << 40);
        while (!token.IsCancellationRequested)
        {
            var b = Blocks / 2 + (rnd.Next(Blocks / 4) * 2) + w;
            gen++;
            Stamp(buffer, b, gen);
            RandomAccess.Write(file, buffer, (long)b * BlockSize);
            Volatile.Write(ref gens[b], gen);
        }
    }

    private static void Stamp(Span<byte> block, int b, long gen)
    {
        for (var i = 0; i < BlockSize; i += 16)
        {
            BinaryPrimitives.WriteInt64LittleEndian(block[i..], (long)b * BlockSize);
            BinaryPrimitives.WriteInt64LittleEndian(block[(i + 8)..], gen);
        }
    }

    private static void AssertStamp(ReadOnlySpan<byte> block, int b, long gen, string where)
    {
        Span<byte> expected = stackalloc byte[BlockSize];
        if (gen == 0)
        {
            expected.Clear();
        }
        else
        {
            Stamp(expected, b, gen);
        }

        if (!block.SequenceEqual(expected))
        {
            var at = (long)b * BlockSize;
            Assert.Fail($"{where}: block at {at} holds offset {BinaryPrimitives.ReadInt64LittleEndian(block)} " +
                        $"generation {BinaryPrimitives.ReadInt64LittleEndian(block[8..])}, expected generation {gen}");
        }
    }
}
