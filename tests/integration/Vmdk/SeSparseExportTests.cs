using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using ExportServer.TestFixtures;
using Xunit;
using static ExportServer.IntegrationTests.Vmdk.VmdkExport;

namespace ExportServer.IntegrationTests.Vmdk;

/// <summary>
/// seSparse extents (built byte by byte, as qemu-img cannot make them) served writable: what
/// qemu-io writes through our export is what `qemu-img convert` reads afterwards and what our own
/// reopen serves; after kill -9 during a stream of writes every written grain reads its old or its
/// new data, never anything else, in qemu-img and here alike.
/// </summary>
public sealed class SeSparseExportTests
{
    /// <summary>A 64 MiB parent (0x99 with a stripe of 0x5a) and a populated seSparse delta over it, or the delta alone.</summary>
    private static async Task<string> MakeAsync(TempDir dir, long capacity, bool populated, bool withParent)
    {
        string? hint = null, cid = "ffffffff";
        if (withParent)
        {
            await ShAsync(dir, $"qemu-img create -f vmdk base.vmdk {capacity} && {Io("vmdk", "base.vmdk", [$"write -P 0x99 0 {capacity}", "write -P 0x5a 1M 3M"])}");
            using var info = JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "--output=json", dir["base.vmdk"])).Check("info").Stdout);
            (hint, cid) = ("base.vmdk", info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("cid").GetInt64().ToString("x8"));
        }

        SeSparseFixture.Build(dir["d-sesparse.vmdk"], capacity, populated);
        await File.WriteAllTextAsync(dir["d.vmdk"], SeSparseFixture.Descriptor(capacity, "d-sesparse.vmdk", hint, cid));
        return dir["d.vmdk"];
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task QemuIoWritesThroughOurExportReadBackInQemuImgAndAfterReopen(bool withParent)
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, 64L << 20, populated: true, withParent);
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["expected.raw"])).Check("convert");

        // In place, over zero and unmapped grains, partial grains over the parent, a new table,
        // across tables, zeroes; then a discard of grains just written (allocated: they unmap).
        string[] writes =
        [
            "write -P 0x11 100 200", "write -P 0x12 5096 512", "write -P 0x13 8192 4096", "write -P 0x14 16391 100",
            "write -P 0x15 33559432 10000", "write -P 0x16 50329600 4096", "write -P 0x17 1M 2M", "write -z 1536K 64K",
            "write -z 20000 3000", "write -P 0x18 67104768 4096",
        ];
        await ShAsync(dir, Io("raw", "expected.raw", [.. writes, "write -z 2560K 128K"]));
        await using (var d = await StartAsync(dir, image, writable: true, discard: "unmap"))
        {
            (await Tool.RunAsync("qemu-io", ["-f", "raw", "-d", "unmap", .. writes.SelectMany(c => new[] { "-c", c }), "-c", "discard 2560K 128K", Uri(dir)])).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", dir["expected.raw"], image)).Check("qemu-img reads what was written");
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["after.raw"])).Check("convert after");
        await using (var d = await StartAsync(dir, image, writable: false))
        {
            await AssertSameAsRawAsync(dir, dir["after.raw"]);
        }
    }

    [Fact]
    public async Task ReadOnlyExportRefusesWritesAndStaysUp()
    {
        using var dir = new TempDir();
        var image = await MakeAsync(dir, 64L << 20, populated: true, withParent: false);
        var before = await File.ReadAllBytesAsync(dir["d-sesparse.vmdk"]);
        await using var d = await StartAsync(dir, image, writable: false);
        var w = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x44 0 4096", Uri(dir));
        Assert.Matches("(?i)read-only|Permission denied", w.Stdout + w.Stderr);
        Assert.DoesNotContain("wrote 4096", w.Stdout);
        (await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", $"read -P {SeSparseFixture.Pattern(1)} 12288 4096", Uri(dir))).Check("still served");
        Assert.False(d.HasExited);
        var after = await File.ReadAllBytesAsync(dir["d-sesparse.vmdk"]);
        Assert.True(before.AsSpan().SequenceEqual(after), "a read-only export changed the extent");
    }

    [Fact]
    public async Task KillDuringWritesLeavesEveryGrainOldOrNew()
    {
        const long capacity = 256L << 20;
        const int grain = SeSparseFixture.GrainBytes;
        using var dir = new TempDir();
        var image = await MakeAsync(dir, capacity, populated: false, withParent: true);
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, dir["old.raw"])).Check("convert old");
        var old = await File.ReadAllBytesAsync(dir["old.raw"]);

        // Slots of four grains; writes within a slot, grain-aligned or not, of part of a grain up to three grains.
        var writer = new DurableWriter(dir, 16384, [0, 512, 4096, 3072], [512, 4096, 8192, 12288], logAttempts: true);
        await KillDuringWrites.RunAsync(dir, image, "vmdk", Uri(dir), () => StartAsync(dir, image, writable: true),
            rounds: 3, seed: 21, async round =>
            {
                (await Tool.RunAsync("qemu-img", "check", image)).Check($"round {round}: check");
                var raw = dir[$"after{round}.raw"];
                (await Tool.RunAsync("qemu-img", "convert", "-U", "-O", "raw", image, raw)).Check($"round {round}: convert");
                var now = await File.ReadAllBytesAsync(raw);
                var durable = writer.Durable.ToHashSet();
                var newGrains = 0;
                foreach (var w in writer.Attempted)
                {
                    for (var g = w.Offset / grain * grain; g < w.Offset + w.Size; g += grain)
                    {
                        var (from, to) = (Math.Max(g, w.Offset), Math.Min(g + grain, w.Offset + w.Size));
                        var isOld = now.AsSpan((int)g, grain).SequenceEqual(old.AsSpan((int)g, grain));
                        var expected = old.AsSpan((int)g, grain).ToArray();
                        expected.AsSpan((int)(from - g), (int)(to - from)).Fill((byte)w.Pattern);
                        var isNew = now.AsSpan((int)g, grain).SequenceEqual(expected);
                        Assert.True(isOld || isNew, $"round {round}: grain at {g} of write {w} reads neither old nor new data");
                        Assert.True(isNew || !durable.Contains(w), $"round {round}: grain at {g} of durable write {w} reads old data");
                        newGrains += isNew && !isOld ? 1 : 0;
                    }
                }

                Assert.True(newGrains > 0, $"round {round}: no write reached the image");
                await using var d = await StartAsync(dir, image, writable: false);
                await AssertSameAsRawAsync(dir, raw);
            }, writer);
    }
}
