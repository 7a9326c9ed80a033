using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

public sealed class Qcow2ResizeTests
{
    [Theory]
    [InlineData("cluster_size=512", 1 << 20, 64 << 20)]
    [InlineData("cluster_size=65536", 1 << 20, 2L << 40)]
    [InlineData("extended_l2=on,cluster_size=16384", 1 << 20, 1L << 33)]
    public async Task GrowingKeepsDataAndMapsTheNewSpace(string options, long from, long to)
    {
        using var dir = new TempDir();
        var img = dir["r.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", options, img, from.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x31 0 1M", img);
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            await node.TruncateAsync(to);
            Assert.Equal(to, node.Length);
            await node.WriteAsync(to - 4096, Enumerable.Repeat((byte)0x32, 4096).ToArray());
            var buf = new byte[4096];
            await node.ReadAsync(4096, buf);
            Assert.All(buf, b => Assert.Equal(0x31, b));
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var read = Ok("qemu-io", "-f", "qcow2", "-r", "-U", "-c", $"read -P 0x32 {to - 4096} 4096", "-c", "read -P 0x31 0 4096", img);
        Assert.DoesNotContain("verification failed", read);
        Assert.Contains("read 4096/4096", read);
    }

    [Fact]
    public async Task ShrinkingOnlyDropsUnusedSpace()
    {
        using var dir = new TempDir();
        var img = dir["s.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "8M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x31 6M 64k", img);
        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(img);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.TruncateAsync(4 << 20).AsTask());
        Assert.Contains("in use", e.Message);
        await node.TruncateAsync(7 << 20);
        Assert.Equal(7 << 20, node.Length);
    }
}
