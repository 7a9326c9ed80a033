using System.Buffers.Binary;
using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

public sealed class Qcow2OptionsTests
{
    [Fact]
    public async Task DefaultL2CacheMapsAOneTebibyteImage()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["big.qcow2"], "1T");
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(dir["big.qcow2"], readOnly: true);

        // 1 TiB / 64 KiB clusters / 8192 entries per table = 2048 tables.
        Assert.Equal(2048, node.L2CacheCapacity);
        Assert.Equal(512, node.RefcountCacheCapacity);
    }

    [Fact]
    public async Task CacheSizeOptionsAreHonoured()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["a.qcow2"], "1G");
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(dir["a.qcow2"], """{"l2-cache-size": "1M", "refcount-cache-size": 524288, "cache-clean-interval": 0}""", readOnly: true);
        Assert.Equal(16, node.L2CacheCapacity);
        Assert.Equal(8, node.RefcountCacheCapacity);
        var e = await Assert.ThrowsAsync<BlockException>(() => h.OpenAsync(dir["a.qcow2"], """{"l2-cache-sizes": "1M"}""", readOnly: true));
        Assert.Contains("l2-cache-sizes", e.Message);
    }

    [Fact]
    public async Task CacheCleanIntervalDropsUnusedTables()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", dir["c.qcow2"], "16M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 16M", dir["c.qcow2"]);
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(dir["c.qcow2"], """{"cache-clean-interval": 1}""", readOnly: true);
        await Qcow2Harness.ReadAllAsync(node);
        Assert.Equal(8, node.L2CacheCount);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (node.L2CacheCount > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        Assert.Equal(0, node.L2CacheCount);
    }

    [Fact]
    public async Task LazyRefcountsSetTheDirtyBitUntilClose()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["l.qcow2"], "8M");
        byte[] whileOpen;
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["l.qcow2"], """{"lazy-refcounts": true}""");
            await node.WriteAsync(0, new byte[70000]);
            await node.FlushAsync();
            whileOpen = h.Files.Opened[dir["l.qcow2"]].Snapshot();
            await h.Graph.CloseAllAsync();
            h.Save(dir["l.qcow2"]);
        }

        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64BigEndian(whileOpen.AsSpan(72)) & 1);
        var closed = File.ReadAllBytes(dir["l.qcow2"]);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(closed.AsSpan(72)) & 1);
        var (code, output) = Check(dir["l.qcow2"]);
        Assert.True(code == 0, output);
    }

    [Fact]
    public async Task DirtyImageIsRepairedWhenOpenedReadWrite()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", dir["d.qcow2"], "8M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 7 0 1M", dir["d.qcow2"]);
        var bytes = File.ReadAllBytes(dir["d.qcow2"]);

        // A crash with lazy refcounts: the dirty bit is set and a cluster's refcount is wrong.
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(72), 1);
        var refBlock = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(4096));
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan((int)refBlock + (2 * 100)), 0);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan((int)refBlock + (2 * 1000)), 1);
        File.WriteAllBytes(dir["d.qcow2"], bytes);
        Assert.NotEqual(0, Check(dir["d.qcow2"]).Code);

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["d.qcow2"]);
            await node.WriteAsync(2 << 20, new byte[4096]);
            await h.Graph.CloseAllAsync();
            h.Save(dir["d.qcow2"]);
        }

        var (code, output) = Check(dir["d.qcow2"]);
        Assert.True(code == 0, output);
    }
}
