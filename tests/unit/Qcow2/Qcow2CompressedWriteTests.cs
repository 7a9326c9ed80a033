using System.Text.RegularExpressions;
using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Compressed cluster writes: the image qemu-img checks clean, reads back equal, and counts compressed clusters.</summary>
public sealed class Qcow2CompressedWriteTests
{
    private const int Cluster = 65536;

    /// <summary>Compressible but not trivial data: a repeated text line with the cluster index in it.</summary>
    private static byte[] Text(int length, int seed)
    {
        var data = new byte[length];
        for (var i = 0; i < length; i++)
        {
            data[i] = (byte)("the quick brown fox jumps over the lazy dog "[i % 44] + ((i / 4096) + seed) % 3);
        }

        return data;
    }

    private static byte[] Noise(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static int CompressedPercent(string checkOutput)
    {
        var m = Regex.Match(checkOutput, @"([0-9.]+)% compressed clusters");
        return m.Success ? (int)Math.Round(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) : 0;
    }

    private static async Task<byte[]> WriteCompressedAsync(TempDir dir, string img, Func<BlockNode, Task> write)
    {
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(img);
        await write(node);
        var expected = await Qcow2Harness.ReadAllAsync(node);
        await h.Graph.CloseAllAsync();
        h.Save(img);
        return expected;
    }

    [Theory]
    [InlineData("zlib", 16, "")]
    [InlineData("zstd", 16, "")]
    [InlineData("zlib", 12, "")]
    [InlineData("zstd", 21, "")]
    [InlineData("zlib", 16, ",extended_l2=on")]
    [InlineData("zstd", 16, ",refcount_bits=64")]
    public async Task CompressedClustersReadBackAndCheckClean(string type, int clusterBits, string extra)
    {
        using var dir = new TempDir();
        var img = dir["c.qcow2"];
        var cs = 1 << clusterBits;
        Ok("qemu-img", "create", "-f", "qcow2", "-o", $"compression_type={type},cluster_size={cs}{extra}", img, $"{16 * cs}");
        var empty = new FileInfo(img).Length;
        var data = Text(8 * cs, 1);
        var expected = await WriteCompressedAsync(dir, img, node => node.WriteAsync(0, data, WriteFlags.Compressed).AsTask());
        Assert.Equal(data, expected[..data.Length]);

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Contains("No errors were found", output);
        Assert.Equal(100, CompressedPercent(output));
        Assert.Equal(data, ConvertToRaw(img, dir.Path)[..data.Length]);

        // Eight compressible clusters pack into at most two host clusters (plus one L2 table).
        var grown = new FileInfo(img).Length - empty;
        Assert.True(grown <= 3L * cs, $"image grew by {grown} bytes");
    }

    [Fact]
    public async Task OneBitRefcountsGiveEachCompressedClusterItsOwnHostCluster()
    {
        using var dir = new TempDir();
        var img = dir["r.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "refcount_bits=1", img, "1M");
        var empty = new FileInfo(img).Length;
        var data = Text(4 * Cluster, 6);
        await WriteCompressedAsync(dir, img, node => node.WriteAsync(0, data, WriteFlags.Compressed).AsTask());
        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Equal(100, CompressedPercent(output));
        Assert.Equal(data, ConvertToRaw(img, dir.Path)[..data.Length]);
        // One L2 table and four data clusters after the metadata (whose last cluster qemu-img leaves short).
        Assert.Equal(((empty + Cluster - 1) / Cluster * Cluster) + (5L * Cluster), new FileInfo(img).Length);
    }

    [Fact]
    public async Task IncompressibleClusterIsWrittenNormally()
    {
        using var dir = new TempDir();
        var img = dir["n.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "1M");
        var noise = Noise(Cluster, 7);
        var text = Text(Cluster, 2);
        await WriteCompressedAsync(dir, img, async node =>
        {
            await node.WriteAsync(0, noise, WriteFlags.Compressed);
            await node.WriteAsync(Cluster, text, WriteFlags.Compressed);
        });

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Equal(50, CompressedPercent(output));
        var raw = ConvertToRaw(img, dir.Path);
        Assert.Equal(noise, raw[..Cluster]);
        Assert.Equal(text, raw[Cluster..(2 * Cluster)]);
    }

    [Fact]
    public async Task PartialClusterIsRefusedWithEinval()
    {
        using var dir = new TempDir();
        var img = dir["p.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "1M");
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(img);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(Cluster, new byte[4096], WriteFlags.Compressed).AsTask());
        Assert.Equal(Errno.EINVAL, e.Errno);
        e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(512, new byte[Cluster], WriteFlags.Compressed).AsTask());
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public async Task PartialLastClusterAtImageEndIsPadded()
    {
        using var dir = new TempDir();
        var img = dir["e.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, $"{Cluster + 4096}");
        var data = Text(Cluster + 4096, 3);
        await WriteCompressedAsync(dir, img, node => node.WriteAsync(0, data, WriteFlags.Compressed).AsTask());
        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Equal(100, CompressedPercent(output));
        Assert.Equal(data, ConvertToRaw(img, dir.Path));
    }

    [Fact]
    public async Task AllocatedClusterIsNotOverwrittenButZeroClusterIs()
    {
        using var dir = new TempDir();
        var img = dir["o.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "1M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -z 128k 64k", img);
        var text = Text(Cluster, 4);
        await WriteCompressedAsync(dir, img, async node =>
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, text, WriteFlags.Compressed).AsTask());
            Assert.Equal(Errno.EIO, e.Errno);
            await node.WriteAsync(2 * Cluster, text, WriteFlags.Compressed);
            e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(2 * Cluster, text, WriteFlags.Compressed).AsTask());
            Assert.Equal(Errno.EIO, e.Errno);

            // A normal write over a compressed cluster replaces it and frees its host bytes.
            await node.WriteAsync(2 * Cluster, Text(4096, 5));
        });

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var raw = ConvertToRaw(img, dir.Path);
        Assert.All(raw[..Cluster], b => Assert.Equal(0x11, b));
        Assert.Equal(Text(4096, 5), raw[(2 * Cluster)..(2 * Cluster + 4096)]);
        Assert.Equal(text[4096..], raw[(2 * Cluster + 4096)..(3 * Cluster)]);
    }

    [Fact]
    public async Task ConcurrentCompressedWritesPackWithoutLeaks()
    {
        using var dir = new TempDir();
        var img = dir["m.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "8M");
        var expected = await WriteCompressedAsync(dir, img, async node =>
        {
            var writes = Enumerable.Range(0, 64).Select(i => node.WriteAsync((long)i * 2 * Cluster, Text(Cluster, i), WriteFlags.Compressed).AsTask());
            await Task.WhenAll(writes);

            // Freeing some compressed clusters leaves the shared host clusters referenced by the rest.
            node.DiscardUnmap = true;
            await node.DiscardAsync(0, 16L * Cluster);
        });

        var (code, output) = Check(img);
        Assert.True(code == 0 && !output.Contains("leaked"), output);
        Assert.Equal(expected, ConvertToRaw(img, dir.Path));
        Assert.Equal(100, CompressedPercent(output));
    }

    [Fact]
    public async Task NodesWithoutSupportRefuseCompressedWrites()
    {
        var node = new ExportServer.UnitTests.Support.MemoryNode("m", 1 << 20);
        Assert.Equal(0, node.CompressedWriteSize);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[Cluster], WriteFlags.Compressed).AsTask());
        Assert.Equal(Errno.ENOTSUP, e.Errno);
    }
}
