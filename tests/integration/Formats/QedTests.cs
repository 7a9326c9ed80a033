using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>qed beyond the common foreign-format tests: its own backing files, need-check repair, damaged headers.</summary>
public sealed class QedTests
{
    /// <summary>A qed overlay naming its backing file (probed, or raw without probing) reads and writes as qemu-img's does.</summary>
    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task BackingFileNamedByTheHeader(string baseFormat)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {baseFormat} base {Size} && {Io(baseFormat, "base", Writes)}");
        await ShAsync(dir, $"qemu-img create -q -f qed -b base -F {baseFormat} top.qed && {Io("qed", "top.qed", ["write -P 0x66 1000 5000", "write -z 22M 1M"])}");
        await ShAsync(dir, "qemu-img convert -O raw top.qed expected.raw");
        string[] more = ["write -P 0x99 30M 1M", "write -P 0x9a 3145728 70000", "write -P 0x9b 67104768 4096"];
        await using (var d = await ServeAsync(dir, "qed", dir["top.qed"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), more))).Check("writes");
        }

        await ShAsync(dir, Io("raw", "expected.raw", more));
        await AssertCheckCleanAsync(dir["top.qed"], "qed");
        await AssertSameAsync(dir["expected.raw"], dir["top.qed"], "qed");
        await ShAsync(dir, $"qemu-img compare -f {baseFormat} base base");
    }

    /// <summary>
    /// Zero writes through the export over a backing file: whole clusters become zero clusters that
    /// hide the backing data (no data cluster is added), partial ones are written; qemu-img reads the
    /// result as the same writes on raw, checks it clean and maps the zeroed clusters as zero.
    /// </summary>
    [Fact]
    public async Task ZeroWritesMakeZeroClustersOverTheBackingFile()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f raw base {Size} && {Io("raw", "base", ["write -P 0x5a 0 8M", "write -P 0x5b 40M 4M"])}");
        await ShAsync(dir, $"qemu-img create -q -f qed -b base -F raw top.qed && {Io("qed", "top.qed", ["write -P 0x66 1M 1M"])}");
        string[] zeroes = ["write -z 0 512K", "write -z 1536K 64K", "write -z 3000000 100000", "write -z 40M 4M"];
        await ShAsync(dir, $"cp base expected.raw && {Io("raw", "expected.raw", ["write -P 0x66 1M 1M", .. zeroes])}");
        var before = new FileInfo(dir["top.qed"]).Length;
        await using (var d = await ServeAsync(dir, "qed", dir["top.qed"], writable: true))
        {
            (await Tool.ShAsync(Io("raw", Uri(dir), zeroes))).Check("zero writes");
            Assert.Equal(0, await d.StopAsync());
        }

        // Two partial clusters (around 3000000 and 3100000) are written as data; nothing else grows the file.
        Assert.Equal(before + (2 * 65536), new FileInfo(dir["top.qed"]).Length);
        await AssertCheckCleanAsync(dir["top.qed"], "qed");
        await AssertSameAsync(dir["expected.raw"], dir["top.qed"], "qed");
        var map = (await Tool.RunAsync("qemu-img", "map", "-f", "qed", "--output=json", dir["top.qed"])).Check("map").Stdout;
        Assert.Contains("{ \"start\": 41943040, \"length\": 4194304, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false", map.Replace("\n", " "));
    }

    /// <summary>
    /// An image left with need-check, an L2 entry beyond the end of the file and a leaked cluster at
    /// the end: opened read-only it is served as is; opened read-write it is repaired (the entry
    /// cleared, the tail cut, the flag cleared) and qemu-img finds nothing wrong.
    /// </summary>
    [Fact]
    public async Task NeedCheckIsRepairedWhenOpenedForWriting()
    {
        using var dir = new TempDir();
        var image = dir["img.qed"];
        await ShAsync(dir, $"qemu-img create -q -f qed img.qed {Size} && {Io("qed", "img.qed", ["write -P 0x11 0 64K", "write -P 0x22 64K 64K"])}");
        // Layout qemu writes: header, L1 (4 clusters), data clusters at 5 and 6, then the L2 table at 7.
        const long cluster = 65536;
        var l2 = 7 * cluster;
        OpenErrors.PatchLe64(image, 16, 2);
        OpenErrors.PatchLe64(image, l2 + 16, 1000 * cluster);
        await ShAsync(dir, "truncate -s +65536 img.qed");
        var dirty = await Tool.RunAsync("qemu-img", "check", "-f", "qed", image);
        Assert.NotEqual(0, dirty.ExitCode);

        await using (var d = await ServeAsync(dir, "qed", image, writable: false))
        {
            (await Tool.ShAsync($"qemu-io -r -f raw -c 'read -P 0x11 0 64K' '{Uri(dir)}'")).Check("read-only read");
        }

        Assert.Equal(11 * cluster + cluster, new FileInfo(image).Length);
        await using (var d = await ServeAsync(dir, "qed", image, writable: true))
        {
            (await Tool.ShAsync(Io("raw", Uri(dir), ["read -P 0x11 0 64K", "read -P 0x22 64K 64K", "read -P 0 128K 64K"]))).Check("repaired read");
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(11 * cluster, new FileInfo(image).Length);
        await AssertCheckCleanAsync(image, "qed");
        var info = (await Tool.RunAsync("qemu-img", "info", "--output=json", image)).Check("info").Stdout;
        Assert.Contains("\"dirty-flag\": false", info);
    }

    /// <summary>Damaged headers are refused with QEMU's message for each field.</summary>
    [Theory]
    [InlineData(0, 0x12345678UL, 4)]
    [InlineData(16, 0x100UL, 8)]
    [InlineData(4, 0x1000UL + 1, 4)]
    [InlineData(8, 3UL, 4)]
    [InlineData(8, 1UL, 4)]
    [InlineData(48, 1UL, 8)]
    [InlineData(40, 0x9000UL, 8)]
    [InlineData(40, 0x100000000UL, 8)]
    [InlineData(12, 0x80000000UL, 4)]
    [InlineData(60, 0x20000UL, 4)]
    public async Task DamagedHeaderGivesQemusError(long offset, ulong value, int width)
    {
        using var dir = new TempDir();
        var image = dir["img.qed"];
        await ShAsync(dir, "qemu-img create -q -u -f qed -b base -F raw img.qed 1M");
        if (width == 4)
        {
            OpenErrors.PatchLe32(image, offset, (uint)value);
        }
        else
        {
            OpenErrors.PatchLe64(image, offset, value);
        }

        await OpenErrors.AssertSameAsQsdAsync("qed", image);
    }
}
