using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// Compressed writes mixed with normal writes, zeroes and discards over them: the image file captured
/// before the driver's writes (what a kill then would leave) passes `qemu-img check` with at most leaks.
/// </summary>
public sealed class Qcow2CompressedCrashSafetyTests
{
    [Theory]
    [InlineData("cluster_size=4096", false)]
    [InlineData("cluster_size=4096,compression_type=zstd", true)]
    [InlineData("cluster_size=16384,extended_l2=on", true)]
    public async Task EveryIntermediateStateHasAtMostLeaks(string options, bool withBacking)
    {
        using var dir = new TempDir();
        TestImages.Create(dir, "img.qcow2", options, "8M", withBacking, "4M");
        CrashCaptures captures;
        var compressed = 0;
        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["img.qcow2"]);
            node.DiscardUnmap = true;
            var cs = node.CompressedWriteSize;
            captures = new CrashCaptures(h.Files.Opened[dir["img.qcow2"]], 5, 2);
            var rnd = new Random(7);
            var data = new byte[cs];
            for (var i = 0; i < 300; i++)
            {
                var off = rnd.NextInt64((8L << 20) / cs) * cs;
                var choice = rnd.Next(10);
                for (var j = 0; j < cs; j++)
                {
                    data[j] = (byte)((j / 64 % 2 == 0 ? 'x' : 'y') + i);
                }

                try
                {
                    switch (choice)
                    {
                        case < 6:
                            await node.WriteAsync(off, data, WriteFlags.Compressed);
                            compressed++;
                            break;
                        case < 8:
                            await node.WriteAsync(off + 100, data.AsMemory(0, 300));
                            break;
                        case 8:
                            await node.WriteZeroesAsync(off, cs, ZeroFlags.MayUnmap);
                            break;
                        default:
                            await node.DiscardAsync(off, 2L * cs);
                            break;
                    }
                }
                catch (BlockException e) when (e.Errno == Errno.EIO && choice < 6)
                {
                    // The cluster was already allocated: compressed writes do not overwrite.
                }

                if (i % 40 == 39)
                {
                    await node.FlushAsync();
                }
            }

            await h.Graph.CloseAllAsync();
            h.Save(dir["img.qcow2"]);
        }

        Assert.True(compressed >= 50, $"only {compressed} compressed writes succeeded");
        captures.AssertAtMostLeaks(dir);

        var (finalCode, finalOutput) = Check(dir["img.qcow2"]);
        Assert.True(finalCode == 0 && finalOutput.Contains("compressed clusters"), finalOutput);
    }
}
