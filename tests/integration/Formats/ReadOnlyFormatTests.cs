using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// bochs and cloop, which QEMU only reads: images built here from the format layouts read as
/// qemu-img reads them (exported, probed by serve, under a qcow2 overlay); damaged headers and
/// read-write opens get qemu-storage-daemon's errors.
/// </summary>
public sealed class ReadOnlyFormatTests
{
    public static TheoryData<string, string> Images => new()
    {
        { "bochs", "v2 8M 64K" },
        { "bochs", "v1 5000K 4K" },
        { "bochs", "v2 3M 8M" },
        { "cloop", "64K 40" },
        { "cloop", "512 300" },
    };

    private static void Build(string format, string spec, string path)
    {
        var p = spec.Split(' ');
        if (format == "bochs")
        {
            WriteBochsSpec(path, p);
        }
        else
        {
            ReadOnlyImages.WriteCloop(path, (uint)Size(p[0]), int.Parse(p[1]), 7);
        }
    }

    private static void WriteBochsSpec(string path, string[] p) =>
        ReadOnlyImages.WriteBochs(path, Size(p[1]), (uint)Size(p[2]), p[0] == "v1", 5);

    private static long Size(string s) => s[^1] switch
    {
        'K' => long.Parse(s[..^1]) * 1024,
        'M' => long.Parse(s[..^1]) * 1024 * 1024,
        _ => long.Parse(s),
    };

    [Theory]
    [MemberData(nameof(Images))]
    public async Task ReadsAsQemuImgReads(string format, string spec)
    {
        using var dir = new TempDir();
        Build(format, spec, dir["img"]);
        await ShAsync(dir, $"qemu-img convert -f {format} -O raw img expected.raw");
        Assert.Contains(File.ReadAllBytes(dir["expected.raw"]), b => b != 0);
        await using var d = await ServeAsync(dir, format, dir["img"], writable: false);
        Assert.Equal(await VirtualSizeAsync(dir["img"], format), await ExportSizeAsync(Uri(dir)));
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
    }

    /// <summary>serve probes the format (cloop by its preamble, bochs by its header) and serves it read-only.</summary>
    [Theory]
    [InlineData("bochs", "v2 8M 64K")]
    [InlineData("cloop", "64K 40")]
    public async Task ServeProbesTheFormat(string format, string spec)
    {
        using var dir = new TempDir();
        Build(format, spec, dir["img"]);
        await ShAsync(dir, $"qemu-img convert -f {format} -O raw img expected.raw");
        await using var d = await Daemon.StartAsync(dir, "serve", dir["img"], "--socket", dir["nbd.sock"], "--name", "disk", "--read-only");
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
    }

    /// <summary>A qcow2 overlay over the read-only format: reads as qemu-img reads the chain, takes writes.</summary>
    [Theory]
    [InlineData("bochs", "v2 8M 64K")]
    [InlineData("cloop", "64K 40")]
    public async Task Qcow2OverlayOverTheFormat(string format, string spec)
    {
        using var dir = new TempDir();
        Build(format, spec, dir["base"]);
        await ShAsync(dir, $"qemu-img create -q -f qcow2 -b base -F {format} top.qcow2 && {Io("qcow2", "top.qcow2", ["write -P 0x66 1000 5000"])}");
        await ShAsync(dir, "qemu-img convert -O raw top.qcow2 expected.raw");
        await using (var d = await ServeAsync(dir, "qcow2", dir["top.qcow2"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x99 1M 64K"]))).Check("write");
        }

        await ShAsync(dir, Io("raw", "expected.raw", ["write -P 0x99 1M 64K"]));
        await AssertSameAsync(dir["expected.raw"], dir["top.qcow2"], "qcow2");
    }

    [Theory]
    [InlineData("bochs")]
    [InlineData("cloop")]
    public async Task ReadWriteOpenIsRefusedAsQemuRefusesIt(string format)
    {
        using var dir = new TempDir();
        Build(format, format == "bochs" ? "v2 1M 64K" : "4096 4", dir["img"]);
        await OpenErrors.AssertSameAsQsdAsync(format, dir["img"], readOnly: false);
    }

    /// <summary>Damaged bochs headers: (offset, 32-bit little-endian value).</summary>
    [Theory]
    [InlineData(0, 0x6863_6f42u + 1)]
    [InlineData(32, 0u)]
    [InlineData(48, 0x41u)]
    [InlineData(64, 0x00030000u)]
    [InlineData(72, 0x100001u)]
    [InlineData(72, 1u)]
    [InlineData(80, 256u)]
    [InlineData(80, 3000u)]
    [InlineData(80, 0x1000000u)]
    public async Task DamagedBochsHeaderGivesQemusError(long offset, uint value)
    {
        using var dir = new TempDir();
        ReadOnlyImages.WriteBochs(dir["img"], 1 << 20, 65536, false, 3);
        OpenErrors.PatchLe32(dir["img"], offset, value);
        await OpenErrors.AssertSameAsQsdAsync("bochs", dir["img"]);
    }

    /// <summary>Damaged cloop headers and offsets: (offset, 32-bit big-endian value).</summary>
    [Theory]
    [InlineData(128, 1000u)]
    [InlineData(128, 0u)]
    [InlineData(128, 0x8000000u)]
    [InlineData(132, 0x20000000u)]
    [InlineData(132, 0x4000000u)]
    [InlineData(148, 0u)]
    [InlineData(148, 0x10000000u)]
    public async Task DamagedCloopHeaderGivesQemusError(long offset, uint value)
    {
        using var dir = new TempDir();
        ReadOnlyImages.WriteCloop(dir["img"], 4096, 4, 3);
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        OpenErrors.Patch(dir["img"], offset, bytes);
        await OpenErrors.AssertSameAsQsdAsync("cloop", dir["img"]);
    }
}
