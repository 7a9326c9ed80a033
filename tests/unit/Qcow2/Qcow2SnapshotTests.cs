using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Internal snapshots made and removed by us are what qemu-img sees, and writes after them keep the snapshot intact.</summary>
public sealed class Qcow2SnapshotTests
{
    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("cluster_size=4096,refcount_bits=4")]
    [InlineData("extended_l2=on")]
    public async Task CreatedSnapshotKeepsItsContentWhileTheImageChanges(string options)
    {
        using var dir = new TempDir();
        var img = dir["s.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", options, img, "4M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -z 1M 100k", img);
        var raw = dir["c.raw"];
        File.WriteAllBytes(raw, Enumerable.Range(0, 1 << 20).Select(i => (byte)(i / 3)).ToArray());
        Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, raw, dir["c.qcow2"]);
        var before = ConvertToRaw(img, dir.Path);

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            var snap = await node.CreateSnapshotAsync("first");
            Assert.Equal("1", snap.Id);
            var e = await Assert.ThrowsAsync<BlockException>(() => node.CreateSnapshotAsync("first").AsTask());
            Assert.Equal(Errno.EEXIST, e.Errno);
            await node.WriteAsync(5000, Enumerable.Repeat((byte)0x77, 200000).ToArray());
            await node.WriteZeroesAsync(2 << 20, 65536, ZeroFlags.MayUnmap);
            await node.CreateSnapshotAsync("second");
            await node.WriteAsync(2 << 20, Enumerable.Repeat((byte)0x78, 4096).ToArray());
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var list = Ok("qemu-img", "snapshot", "-U", "-l", img);
        Assert.Contains("first", list);
        Assert.Contains("second", list);
        Assert.Equal(before, ConvertToRaw(img, dir.Path, "first"));

        var expected = (byte[])before.Clone();
        Array.Fill(expected, (byte)0x77, 5000, 200000);
        Array.Fill(expected, (byte)0, 2 << 20, 65536);
        Array.Fill(expected, (byte)0x78, 2 << 20, 4096);
        Assert.Equal(expected, ConvertToRaw(img, dir.Path));

        // Compressed clusters shared with a snapshot are copied on write, never changed in place.
        var compressed = File.ReadAllBytes(raw);
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["c.qcow2"]);
            await node.CreateSnapshotAsync("base");
            await node.WriteAsync(70000, new byte[1000]);
            await h.Graph.CloseAllAsync();
            h.Save(dir["c.qcow2"]);
        }

        (code, output) = Check(dir["c.qcow2"]);
        Assert.True(code == 0, output);
        Assert.Equal(compressed, ConvertToRaw(dir["c.qcow2"], dir.Path, "base"));
        Array.Clear(compressed, 70000, 1000);
        Assert.Equal(compressed, ConvertToRaw(dir["c.qcow2"], dir.Path));
    }

    [Fact]
    public async Task DeletingSnapshotsFreesTheirClusters()
    {
        using var dir = new TempDir();
        var img = dir["d.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "4M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 2M", img);
        Ok("qemu-img", "snapshot", "-c", "one", img);
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 0 1M", img);
        Ok("qemu-img", "snapshot", "-c", "two", img);
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 512k 1M", img);
        var active = ConvertToRaw(img, dir.Path);
        var two = ConvertToRaw(img, dir.Path, "two");

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            await node.DeleteSnapshotAsync("one");
            Assert.Single(node.Snapshots);
            await node.WriteAsync(3 << 20, new byte[] { 1, 2, 3 });
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var list = Ok("qemu-img", "snapshot", "-U", "-l", img);
        Assert.DoesNotContain("one", list);
        Assert.Equal(two, ConvertToRaw(img, dir.Path, "two"));
        active[3 << 20] = 1;
        active[(3 << 20) + 1] = 2;
        active[(3 << 20) + 2] = 3;
        Assert.Equal(active, ConvertToRaw(img, dir.Path));
    }
}
