using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Images written by qemu-img/qemu-io read exactly as `qemu-img convert -O raw` reads them.</summary>
public sealed class Qcow2ReadTests
{
    private const string Size = "8M";

    /// <summary>Data, zeroes and unaligned writes over a few clusters and L2 tables.</summary>
    private static void Fill(string image, string format = "qcow2")
    {
        Ok("qemu-io", "-f", format,
            "-c", "write -P 0x11 0 1M",
            "-c", "write -P 0x22 1536k 7k",
            "-c", "write -z 512k 64k",
            "-c", "write -P 0x33 3000001 77777",
            "-c", "write -P 0x44 7M 1M",
            "-c", "write -P 0x55 4M 512",
            image);
    }

    private static async Task AssertReadsLikeQemu(string image, TempDir dir, string? extra = null)
    {
        var expected = ConvertToRaw(image, dir.Path);
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(image, extra, readOnly: true);
        Assert.Equal(expected.Length, node.Length);
        var actual = await Qcow2Harness.ReadAllAsync(node);
        Assert.True(expected.AsSpan().SequenceEqual(actual), "content differs from qemu-img convert");
    }

    [Theory]
    [InlineData("")]
    [InlineData("cluster_size=512")]
    [InlineData("cluster_size=2M")]
    [InlineData("compat=0.10")]
    [InlineData("refcount_bits=1")]
    [InlineData("refcount_bits=64")]
    [InlineData("extended_l2=on")]
    [InlineData("extended_l2=on,cluster_size=128k")]
    [InlineData("lazy_refcounts=on")]
    [InlineData("preallocation=metadata")]
    [InlineData("preallocation=full")]
    public async Task ReadsImagesWrittenByQemu(string options)
    {
        using var dir = new TempDir();
        var img = dir["a.qcow2"];
        Ok("qemu-img", options.Length == 0 ? ["create", "-f", "qcow2", img, Size] : ["create", "-f", "qcow2", "-o", options, img, Size]);
        Fill(img);
        await AssertReadsLikeQemu(img, dir);
    }

    [Theory]
    [InlineData("zlib")]
    [InlineData("zstd")]
    public async Task ReadsCompressedClusters(string type)
    {
        using var dir = new TempDir();
        var raw = dir["src.raw"];
        Ok("qemu-img", "create", "-f", "raw", raw, Size);
        Fill(raw, "raw");
        var random = new byte[100000];
        new Random(5).NextBytes(random);
        using (var f = File.OpenWrite(raw))
        {
            f.Position = 5 * 1024 * 1024 + 3;
            f.Write(random);
        }

        var img = dir["c.qcow2"];
        Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=" + type, raw, img);
        await AssertReadsLikeQemu(img, dir);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ReadsBackingChainsRelativeToTheOverlay(bool withFormat)
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], Size);
        Fill(dir["base.qcow2"]);
        Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir["mid.qcow2"]);
        if (!withFormat)
        {
            // Drop the backing format extension: the format must then be probed.
            var bytes = File.ReadAllBytes(dir["mid.qcow2"]);
            var header = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "mid");
            header.BackingFormat = null;
            header.Write(bytes.AsSpan(0, 65536));
            File.WriteAllBytes(dir["mid.qcow2"], bytes);
        }

        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x66 100k 300k", "-c", "write -z 7680k 64k", dir["mid.qcow2"]);
        Ok("qemu-img", "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir["top.qcow2"], "12M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1000 3000", "-c", "write -P 0x78 9M 64k", dir["top.qcow2"]);
        await AssertReadsLikeQemu(dir["top.qcow2"], dir);

        await using var h = new Qcow2Harness();
        var top = await h.OpenAsync(dir["top.qcow2"], readOnly: true);
        Assert.NotNull(top.BackingChild);
        Assert.Equal("qcow2", top.BackingChild!.Node.DriverName);
        Assert.NotNull(top.BackingChild.Node.BackingChild);
        var s = await top.GetBlockStatusAboveAsync(200 * 1024, 4096);
        Assert.Equal(2, s.Depth);
        Assert.True(s.IsData);
    }

    [Fact]
    public async Task NullBackingOptionHidesTheBackingFile()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], Size);
        Fill(dir["base.qcow2"]);
        Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir["top.qcow2"]);
        await using var h = new Qcow2Harness();
        var top = await h.OpenAsync(dir["top.qcow2"], """{"backing": null}""", readOnly: true);
        Assert.Null(top.BackingChild);
        var buf = new byte[4096];
        await top.ReadAsync(0, buf);
        Assert.All(buf, b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData("")]
    [InlineData(",data_file_raw=on")]
    public async Task ReadsExternalDataFiles(string raw)
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "data_file=" + dir["data.bin"] + raw, dir["d.qcow2"], Size);
        Fill(dir["d.qcow2"]);
        await AssertReadsLikeQemu(dir["d.qcow2"], dir);
    }

    [Fact]
    public async Task OpensInternalSnapshotsReadOnly()
    {
        using var dir = new TempDir();
        var img = dir["s.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, Size);
        Fill(img);
        Ok("qemu-img", "snapshot", "-c", "first", img);
        var before = ConvertToRaw(img, dir.Path);
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x99 0 2M", "-c", "write -z 7M 512k", img);
        await AssertReadsLikeQemu(img, dir);

        await using var h = new Qcow2Harness();
        var snap = await h.OpenAsync(img, """{"snapshot": {"name": "first"}}""");
        Assert.True(snap.IsReadOnly);
        Assert.Single(snap.Snapshots);
        Assert.Equal("first", snap.Snapshots[0].Name);
        Assert.Equal(before, await Qcow2Harness.ReadAllAsync(snap));
    }

    [Fact]
    public async Task BlockStatusReportsThisLayerOnly()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], Size);
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 1M", dir["base.qcow2"]);
        Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir["top.qcow2"]);
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 2 64k 64k", "-c", "write -z 256k 128k", dir["top.qcow2"]);
        await using var h = new Qcow2Harness();
        var top = await h.OpenAsync(dir["top.qcow2"], readOnly: true);

        var s = await top.GetBlockStatusAsync(0, 1024 * 1024);
        Assert.False(s.IsAllocated);
        Assert.Equal(64 * 1024, s.Length);
        s = await top.GetBlockStatusAsync(64 * 1024, 1024 * 1024);
        Assert.Equal(BlockStatusFlags.Allocated | BlockStatusFlags.Data, s.Flags);
        Assert.Equal(64 * 1024, s.Length);
        s = await top.GetBlockStatusAsync(256 * 1024, 1024 * 1024);
        Assert.Equal(BlockStatusFlags.Allocated | BlockStatusFlags.Zero, s.Flags);
        Assert.Equal(128 * 1024, s.Length);
        s = await top.GetBlockStatusAboveAsync(0, 4096);
        Assert.Equal(2, s.Depth);
        s = await top.GetBlockStatusAboveAsync(2 * 1024 * 1024, 4096);
        Assert.Equal(0, s.Depth);
        Assert.True(s.IsZero);
    }

    [Fact]
    public async Task BlockStatusJoinsRunsAcrossL2Tables()
    {
        // 4 KiB clusters: one L2 table maps 2 MiB, so every run below spans several tables, and one
        // answer may join clusters that are not contiguous on the host.
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", dir["img.qcow2"], "32M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 5M", "-c", "write -z 7M 5M", dir["img.qcow2"]);
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(dir["img.qcow2"], readOnly: true);
        const long M = 1024 * 1024;

        Assert.Equal(new BlockStatus(M, BlockStatusFlags.None), await node.GetBlockStatusAsync(0, 32 * M));
        Assert.Equal(new BlockStatus(5 * M, BlockStatusFlags.Allocated | BlockStatusFlags.Data), await node.GetBlockStatusAsync(M, 31 * M));
        Assert.Equal(new BlockStatus(M, BlockStatusFlags.None), await node.GetBlockStatusAsync(6 * M, 26 * M));
        Assert.Equal(new BlockStatus(5 * M, BlockStatusFlags.Allocated | BlockStatusFlags.Zero), await node.GetBlockStatusAsync(7 * M, 25 * M));
        Assert.Equal(new BlockStatus(20 * M, BlockStatusFlags.None), await node.GetBlockStatusAsync(12 * M, 20 * M));

        // An answer never goes beyond the range asked for.
        Assert.Equal(new BlockStatus(3 * M, BlockStatusFlags.Allocated | BlockStatusFlags.Data), await node.GetBlockStatusAsync(2 * M, 3 * M));
    }
}
