using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// A seeded random sequence of writes, zero-writes and discards (aligned and unaligned, within and
/// across clusters) applied through our export and by qemu-io to a copy of the same image: the two
/// images then compare equal and both pass `qemu-img check`. The export runs with discard=unmap:
/// qemu-io passes discards down, while a node's default (as in QEMU) ignores them.
/// </summary>
public sealed class DifferentialTests
{
    // Applies the operations through NBD and prints each as the qemu-io command doing the same.
    private const string Client = """
        import nbd, random, sys
        uri, seed, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        rnd = random.Random(seed)
        h = nbd.NBD(); h.connect_uri(uri)
        cluster = 65536
        for n in range(count):
            if rnd.random() < 0.4:
                off = rnd.randrange(0, size // cluster) * cluster
                length = rnd.randrange(1, 5) * cluster
            else:
                off = rnd.randrange(0, size - 1)
                length = rnd.randrange(1, 200000)
            length = min(length, size - off)
            kind = rnd.choice(["write", "write", "write", "zero", "discard"])
            if kind == "write":
                pat = rnd.randrange(1, 256)
                h.pwrite(bytes([pat]) * length, off)
                print(f"write -P {pat} {off} {length}")
            elif kind == "zero":
                h.zero(length, off, 0 if rnd.random() < 0.5 else nbd.CMD_FLAG_NO_HOLE)
                print(f"write -z {off} {length}")
            else:
                h.trim(length, off)
                print(f"discard {off} {length}")
            if n % 50 == 0:
                h.flush()
        h.flush()
        h.shutdown()
        """;

    private const long Size = 16L << 20;

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(4, true)]
    [InlineData(5, true)]
    public async Task ExportAndQemuIoAgree(int seed, bool withBacking)
    {
        using var dir = new TempDir();
        var ours = dir["ours.qcow2"];
        var theirs = dir["theirs.qcow2"];
        if (withBacking)
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], $"{Size}")).Check("base");
            (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0xbb 0 6M", "-c", "write -P 0xcc 10485860 3M", dir["base.qcow2"])).Check("fill base");
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-b", dir["base.qcow2"], "-F", "qcow2", ours)).Check("overlay");
        }
        else
        {
            (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", ours, $"{Size}")).Check("create");
        }

        File.Copy(ours, theirs);
        await File.WriteAllTextAsync(dir["client.py"], Client);
        List<string> ops;
        await using (var d = await Qcow2Export.StartAsync(dir, ours, writable: true, unmap: true))
        {
            var run = await Tool.RunAsync("/usr/bin/python3", [dir["client.py"], Qcow2Export.Uri(dir), $"{seed}", "300", $"{Size}"], TimeSpan.FromMinutes(3));
            run.Check("nbd client");
            ops = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(300, ops.Count);
        var io = await Tool.RunAsync("qemu-io", ["-f", "qcow2", .. ops.SelectMany(o => new[] { "-c", o }), theirs]);
        Assert.True(io.ExitCode == 0 && !io.Stdout.Contains("error", StringComparison.OrdinalIgnoreCase), io.Stdout + io.Stderr);

        foreach (var image in new[] { ours, theirs })
        {
            var check = await Tool.RunAsync("qemu-img", "check", image);
            Assert.True(check.ExitCode == 0, $"{image}: {check.Stdout}{check.Stderr}");
        }

        var cmp = await Tool.RunAsync("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", ours, theirs);
        Assert.True(cmp.ExitCode == 0, cmp.Stdout + cmp.Stderr);
    }
}
