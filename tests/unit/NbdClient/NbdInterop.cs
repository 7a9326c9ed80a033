using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>I/O scenarios run the same way against every server; each checks what it wrote by reading it back.</summary>
internal static class NbdInterop
{
    /// <summary>Random data at aligned and unaligned places, small and larger than one request, read back whole and in pieces.</summary>
    public static async Task RoundTripAsync(BlockNode node, int seed)
    {
        var random = new Random(seed);
        foreach (var (offset, length) in new (long, int)[] { (0, 4096), (65536, 1 << 20), (12345, 777), (4095, 2), (node.Length - 1000, 1000), (300_001, 70_000) })
        {
            var data = new byte[length];
            random.NextBytes(data);
            await node.WriteAsync(offset, data);
            var back = new byte[length];
            await node.ReadAsync(offset, back);
            Assert.True(data.AsSpan().SequenceEqual(back), $"mismatch at {offset}+{length}");

            // An unaligned window inside what was written.
            var inner = new byte[Math.Max(1, length / 3)];
            var at = length / 3;
            await node.ReadAsync(offset + at, inner);
            Assert.True(data.AsSpan(at, inner.Length).SequenceEqual(inner), $"inner mismatch at {offset + at}");
        }

        await node.WriteAsync(8192, new byte[] { 1, 2, 3 }, WriteFlags.Fua);
        var fua = new byte[3];
        await node.ReadAsync(8192, fua);
        Assert.Equal(new byte[] { 1, 2, 3 }, fua);
    }

    /// <summary>The whole node reads as <paramref name="expected"/>.</summary>
    public static async Task AssertSameAsync(BlockNode node, byte[] expected)
    {
        var all = new byte[node.Length];
        await node.ReadAsync(0, all);
        Assert.True(expected.AsSpan().SequenceEqual(all));
    }

    /// <summary><paramref name="count"/> writes in flight at once, then as many reads, each checked against its own pattern.</summary>
    public static async Task ConcurrentAsync(BlockNode node, int count)
    {
        const int Piece = 16 * 1024;
        var patterns = Enumerable.Range(0, count).Select(i => Enumerable.Repeat((byte)(i + 1), Piece).ToArray()).ToArray();
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => node.WriteAsync((long)i * Piece, patterns[i]).AsTask()));
        var buffers = Enumerable.Range(0, count).Select(_ => new byte[Piece]).ToArray();
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => node.ReadAsync((long)i * Piece, buffers[i]).AsTask()));
        for (var i = 0; i < count; i++)
        {
            Assert.True(patterns[i].AsSpan().SequenceEqual(buffers[i]), $"request {i} got another request's data");
        }
    }

    /// <summary>Zeroes [64 KiB, 256 KiB) in two ways and an unaligned range; discards what a server may drop; flushes.</summary>
    public static async Task ZeroTrimFlushAsync(BlockNode node)
    {
        var ones = Enumerable.Repeat((byte)0xff, 512 * 1024).ToArray();
        await node.WriteAsync(0, ones);
        await node.WriteZeroesAsync(65536, 65536);
        await node.WriteZeroesAsync(131072, 131072, ZeroFlags.MayUnmap);
        await node.WriteZeroesAsync(300_003, 5);
        await node.FlushAsync();

        var back = new byte[512 * 1024];
        await node.ReadAsync(0, back);
        Assert.All(back.AsSpan(0, 65536).ToArray(), b => Assert.Equal(0xff, b));
        Assert.All(back.AsSpan(65536, 196608).ToArray(), b => Assert.Equal(0, b));
        Assert.All(back.AsSpan(300_003, 5).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xff, back[300_002]);
        Assert.Equal(0xff, back[300_008]);

        // Trim is advisory: the range may read as anything afterwards, but the request must succeed
        // and leave the rest alone.
        await node.DiscardAsync(393216, 65536);
        var after = new byte[65536];
        await node.ReadAsync(393216 + 65536, after);
        Assert.All(after, b => Assert.Equal(0xff, b));
    }

    /// <summary>The node's block status from start to end, extent by extent.</summary>
    public static async Task<List<(long Offset, long Length, BlockStatus Status)>> MapAsync(BlockNode node)
    {
        var extents = new List<(long, long, BlockStatus)>();
        for (long offset = 0; offset < node.Length;)
        {
            var s = await node.GetBlockStatusAsync(offset, node.Length - offset);
            extents.Add((offset, s.Length, s));
            offset += s.Length;
        }

        return extents;
    }
}
