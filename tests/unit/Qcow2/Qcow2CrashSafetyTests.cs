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

        CrashCaptures captures;
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["img.qcow2"]);
            node.DiscardUnmap = true;
            captures = new CrashCaptures(h.Files.Opened[dir["img.qcow2"]], 7, 3);
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

        captures.AssertAtMostLeaks(dir);
    }
}
