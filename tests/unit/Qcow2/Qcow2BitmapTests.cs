using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// Persistent bitmaps: those qemu-img stores are loaded with their bits, marked in use while the
/// image is open read-write, and stored back on close so that qemu-img sees them (and ours) with
/// clean refcounts.
/// </summary>
public sealed class Qcow2BitmapTests
{
    private static JsonArray Bitmaps(string img) =>
        (JsonArray)JsonNode.Parse(Ok("qemu-img", "info", "-U", "--output=json", img))!["format-specific"]!["data"]!["bitmaps"]!;

    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("cluster_size=4096,refcount_bits=4")]
    [InlineData("lazy_refcounts=on")]
    public async Task StoredBitmapsSurviveAReadWriteSessionAndRecordItsWrites(string options)
    {
        using var dir = new TempDir();
        var img = dir["b.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", options, img, "64M");
        Ok("qemu-img", "bitmap", "--add", "-g", "65536", img, "b0");
        Ok("qemu-io", "-f", "qcow2", "-c", "write 0 64k", "-c", "write 1M 4k", img);
        Ok("qemu-img", "bitmap", "--add", "--disable", img, "off");

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            var b0 = node.FindDirtyBitmap("b0")!;
            Assert.True(b0.Persistent && b0.Enabled && !b0.Inconsistent);
            Assert.Equal(2 * 65536, b0.Count);
            Assert.False(node.FindDirtyBitmap("off")!.Enabled);

            // While open, the image marks both in use.
            h.Save(img, dir["open.qcow2"]);
            Assert.All(Bitmaps(dir["open.qcow2"]), b => Assert.Contains("in-use", b!["flags"]!.AsArray().Select(f => f!.GetValue<string>())));

            await node.WriteAsync(10 << 20, new byte[100]);
            var added = node.CreateDirtyBitmap("new", 4096);
            added.Persistent = true;
            await node.WriteAsync(20 << 20, new byte[5000]);
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var list = Bitmaps(img);
        Assert.Equal(["b0", "off", "new"], list.Select(b => b!["name"]!.GetValue<string>()));
        Assert.Equal(["auto"], list[0]!["flags"]!.AsArray().Select(f => f!.GetValue<string>()));
        Assert.Empty(list[1]!["flags"]!.AsArray());
        Assert.Equal(4096, list[2]!["granularity"]!.GetValue<long>());

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img, readOnly: true);
            Assert.Equal(4 * 65536, node.FindDirtyBitmap("b0")!.Count);
            Assert.Equal(2 * 4096, node.FindDirtyBitmap("new")!.Count);
            Assert.True(node.FindDirtyBitmap("off")!.Bits.IsEmpty);
            Assert.True(node.FindDirtyBitmap("b0")!.ReadOnly);
        }
    }

    [Fact]
    public async Task ABitmapLeftInUseLoadsAsInconsistentAndStaysInUse()
    {
        using var dir = new TempDir();
        var img = dir["b.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "16M");
        Ok("qemu-img", "bitmap", "--add", img, "b0");
        await using (var h = new Qcow2Harness())
        {
            await h.OpenAsync(img);
            h.Save(img);
        }

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            var b0 = node.FindDirtyBitmap("b0")!;
            Assert.True(b0.Inconsistent);
            Assert.False(b0.Enabled);
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        Assert.Contains("in-use", Bitmaps(img)[0]!["flags"]!.AsArray().Select(f => f!.GetValue<string>()));
        var (code, output) = Check(img);
        Assert.True(code == 0, output);
    }

    [Fact]
    public async Task RemovingAStoredBitmapFreesItsClusters()
    {
        using var dir = new TempDir();
        var img = dir["b.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "16M");
        Ok("qemu-img", "bitmap", "--add", img, "b0");
        Ok("qemu-io", "-f", "qcow2", "-c", "write 0 1M", img);
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            await ((ExportServer.Block.Bitmaps.IPersistentBitmaps)node).RemoveStoredAsync("b0");
            node.ReleaseDirtyBitmap(node.FindDirtyBitmap("b0")!);
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var info = JsonNode.Parse(Ok("qemu-img", "info", "-U", "--output=json", img))!;
        Assert.Null(info["format-specific"]!["data"]!["bitmaps"]);
        var (code, output) = Check(img);
        Assert.True(code == 0 && !output.Contains("leaked"), output);
    }

    [Fact]
    public async Task ImagesOfVersionTwoCannotStoreBitmaps()
    {
        using var dir = new TempDir();
        var img = dir["v2.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", img, "16M");
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(img);
        var e = Assert.Throws<BlockException>(() => node.CheckCanStore("b", 65536));
        Assert.Equal($"Can't make bitmap 'b' persistent in '{node.NodeName}': Cannot store dirty bitmaps in qcow2 v2 files", e.Message);
    }
}
