using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// The image file is captured just before many of the writes the driver makes (what a kill at that
/// moment would leave); every capture must pass `qemu-img check` with at most leaked clusters.
/// </summary>
public sealed class Qcow2CrashSafetyTests
{
    [Theory]
    [InlineData("cluster_size=4096", false)]
    [InlineData("cluster_size=4096", true)]
    [InlineData("cluster_size=512,refcount_bits=2", false)]
    [InlineData("cluster_size=512,refcount_bits=64", false)]
    [InlineData("extended_l2=on,cluster_size=16384", true)]
    public async Task EveryIntermediateStateHasAtMostLeaks(string options, bool withBacking)
    {
        using var dir = new TempDir();
        TestImages.Create(dir, "img.qcow2", options, "8M", withBacking, "4M");

        var captures = new List<byte[]>();
        var writes = 0;
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["img.qcow2"]);
            node.DiscardUnmap = true;
            h.Files.Opened[dir["img.qcow2"]].BeforeWrite = f =>
            {
                if (writes++ % 7 == 3 && captures.Count < 40)
                {
                    captures.Add(f.Snapshot());
                }
            };
            var rnd = new Random(42);
            for (var i = 0; i < 400; i++)
            {
                var off = rnd.NextInt64(8L << 20);
                var len = (int)Math.Min(rnd.Next(1, 40000), (8L << 20) - off);
                switch (rnd.Next(10))
                {
                    case < 7:
                        await node.WriteAsync(off, new byte[len].Select(_ => (byte)i).ToArray());
                        break;
                    case < 9:
                        await node.WriteZeroesAsync(off, len, ZeroFlags.MayUnmap);
                        break;
                    default:
                        await node.DiscardAsync(off, len);
                        break;
                }

                if (i % 50 == 49)
                {
                    await node.FlushAsync();
                }
            }
        }

        Assert.True(captures.Count >= 10, $"only {captures.Count} captures");
        for (var i = 0; i < captures.Count; i++)
        {
            File.WriteAllBytes(dir["crash.qcow2"], captures[i]);
            var (code, output) = Check(dir["crash.qcow2"]);
            Assert.True(code is 0 or 3, $"capture {i}: qemu-img check exit {code}: {output}");
        }
    }
}
