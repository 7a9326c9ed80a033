using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

public sealed class Qcow2DiscardTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task DiscardFreesClustersOnlyWithDiscardUnmap(bool unmap)
    {
        using var dir = new TempDir();
        var img = dir["d.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "4M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 0 2M", img);
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            node.DiscardUnmap = unmap;
            await node.DiscardAsync(65536, 1 << 20);
            var buf = new byte[1 << 20];
            await node.ReadAsync(65536, buf);
            Assert.All(buf, b => Assert.Equal(unmap ? 0 : 0x44, b));
            var file = h.Files.Opened[img];
            Assert.Equal(unmap ? 1 << 20 : 0, file.DiscardedBytes);
            await h.Graph.CloseAllAsync();
            h.Save(img);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        var read = Ok("qemu-io", "-f", "qcow2", "-r", "-U", "-c", "read -P 0x44 0 64k", "-c", $"read -P {(unmap ? "0" : "0x44")} 64k 1M", "-c", "read -P 0x44 1088k 960k", img);
        Assert.DoesNotContain("verification failed", read);
    }
}
