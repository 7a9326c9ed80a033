using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Many concurrent writers into shared clusters and L2 tables lose nothing and leave a clean image.</summary>
public sealed class Qcow2ConcurrencyTests
{
    [Theory]
    [InlineData("cluster_size=65536", false)]
    [InlineData("cluster_size=4096", true)]
    [InlineData("extended_l2=on,cluster_size=32768", true)]
    public async Task ConcurrentWritesToDisjointBlocks(string options, bool withBacking)
    {
        using var dir = new TempDir();
        TestImages.Create(dir, "img.qcow2", options, "16M", withBacking, "16M");
        var expected = ConvertToRaw(dir["img.qcow2"], dir.Path);

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["img.qcow2"]);

            // 4 KiB blocks shuffled among 32 writers; each block is written once, so the order does not matter.
            var blocks = Enumerable.Range(0, 4096).OrderBy(i => (i * 2654435761u) % 4099).ToArray();
            var tasks = Enumerable.Range(0, 32).Select(w => Task.Run(async () =>
            {
                for (var k = w; k < blocks.Length; k += 32)
                {
                    if (k % 3 == 0)
                    {
                        continue;
                    }

                    var b = blocks[k];
                    var data = new byte[4096];
                    Array.Fill(data, (byte)(b % 251 + 1));
                    await node.WriteAsync(b * 4096L, data);
                }
            }));
            await Task.WhenAll(tasks);
            for (var k = 0; k < blocks.Length; k++)
            {
                if (k % 3 != 0)
                {
                    Array.Fill(expected, (byte)(blocks[k] % 251 + 1), blocks[k] * 4096, 4096);
                }
            }

            var reads = Enumerable.Range(0, 16).Select(_ => Qcow2Harness.ReadAllAsync(node)).ToArray();
            foreach (var r in await Task.WhenAll(reads))
            {
                Assert.True(expected.AsSpan().SequenceEqual(r), "concurrent reads differ from what was written");
            }

            await h.Graph.CloseAllAsync();
            h.Save(dir["img.qcow2"]);
        }

        Assert.Equal(expected, ConvertToRaw(dir["img.qcow2"], dir.Path));
        var (code, output) = Check(dir["img.qcow2"]);
        Assert.True(code == 0, output);
    }
}
