using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Filters.Compress;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>The compress filter over qcow2: writes become compressed clusters; it refuses children without support.</summary>
public sealed class CompressFilterTests
{
    private const int Cluster = 65536;

    [Fact]
    public async Task WritesThroughTheFilterAreCompressed()
    {
        using var dir = new TempDir();
        var img = dir["f.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "1M");
        var data = new byte[3 * Cluster];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(i % 251 < 128 ? 'a' : 'b');
        }

        await using (var h = new Qcow2Harness())
        {
            h.Graph.Register(CompressDriver.Instance);
            await h.OpenAsync(img, """{"node-name": "q"}""");
            var filter = await h.Graph.AddAsync(new JsonObject { ["driver"] = "compress", ["node-name"] = "c", ["file"] = "q" });
            Assert.Equal(Cluster, filter.Limits.RequestAlignment);

            // Whole clusters, and a partial one that the common path completes to a whole cluster.
            await filter.WriteAsync(0, data.AsMemory(0, 2 * Cluster));
            await filter.WriteAsync(2 * Cluster + 100, data.AsMemory(2 * Cluster + 100, 1000));
            var e = await Assert.ThrowsAsync<BlockException>(() => filter.WriteAsync(0, data.AsMemory(0, 512)).AsTask());
            Assert.Equal(Errno.EIO, e.Errno);
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Contains("100.00% compressed clusters", output);
        var raw = ConvertToRaw(img, dir.Path);
        Assert.Equal(data[..(2 * Cluster)], raw[..(2 * Cluster)]);
        Assert.Equal(data[(2 * Cluster + 100)..(2 * Cluster + 1100)], raw[(2 * Cluster + 100)..(2 * Cluster + 1100)]);
        Assert.All(raw[(2 * Cluster)..(2 * Cluster + 100)], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task FilterRefusesAChildWithoutCompressedWrites()
    {
        await using var h = new Qcow2Harness();
        h.Graph.Register(CompressDriver.Instance);
        h.Graph.Register(ExportServer.Block.Protocols.Null.NullDriver.Co);
        await h.Graph.AddAsync(new JsonObject { ["driver"] = "null-co", ["node-name"] = "n" });
        var e = await Assert.ThrowsAsync<BlockException>(() => h.Graph.AddAsync(new JsonObject { ["driver"] = "compress", ["node-name"] = "c", ["file"] = "n" }).AsTask());
        Assert.Equal("Compression is not supported for underlying format: null-co", e.Message);
        Assert.Null(h.Graph.TryFind("c"));
    }
}
