using System.Globalization;
using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// The same seeded sequence of writes, zero writes and discards goes through our node into one copy
/// of an image and through qemu-io into another; both must pass `qemu-img check` and compare equal.
/// </summary>
public sealed class Qcow2DifferentialTests
{
    private const long Size = 6 * 1024 * 1024;

    private sealed record Op(char Kind, long Offset, long Length, byte Pattern, bool Unmap);

    private static List<Op> MakeOps(int seed, int count, int cluster)
    {
        var rnd = new Random(seed);
        var ops = new List<Op>();
        for (var i = 0; i < count; i++)
        {
            var aligned = rnd.Next(2) == 0;
            long off, len;
            if (aligned)
            {
                off = rnd.NextInt64(Size / cluster) * cluster;
                len = (rnd.Next(8) + 1) * (long)cluster;
            }
            else
            {
                off = rnd.NextInt64(Size);
                len = rnd.Next(1, 3 * cluster + 5000);
            }

            len = Math.Min(len, Size - off);
            if (len == 0)
            {
                continue;
            }

            var r = rnd.Next(100);
            var kind = r < 60 ? 'w' : r < 85 ? 'z' : 'd';
            ops.Add(new Op(kind, off, len, (byte)(i % 250 + 1), rnd.Next(2) == 0));
        }

        return ops;
    }

    private static string ToQemuIo(Op op) => op.Kind switch
    {
        'w' => string.Create(CultureInfo.InvariantCulture, $"write -P 0x{op.Pattern:x2} {op.Offset} {op.Length}"),
        'z' => string.Create(CultureInfo.InvariantCulture, $"write -z {(op.Unmap ? "-u " : "")}{op.Offset} {op.Length}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"discard {op.Offset} {op.Length}"),
    };

    private static async Task Apply(BlockNode node, Op op)
    {
        switch (op.Kind)
        {
            case 'w':
                var buf = new byte[op.Length];
                Array.Fill(buf, op.Pattern);
                await node.WriteAsync(op.Offset, buf);
                break;
            case 'z':
                await node.WriteZeroesAsync(op.Offset, op.Length, op.Unmap ? ZeroFlags.MayUnmap : ZeroFlags.None);
                break;
            default:
                await node.DiscardAsync(op.Offset, op.Length);
                break;
        }
    }

    [Theory]
    [InlineData("cluster_size=65536", false, 1)]
    [InlineData("cluster_size=65536", true, 2)]
    [InlineData("cluster_size=4096", true, 3)]
    [InlineData("cluster_size=4096,refcount_bits=1", false, 4)]
    [InlineData("cluster_size=512,refcount_bits=64", false, 5)]
    [InlineData("compat=0.10,cluster_size=4096", true, 6)]
    [InlineData("extended_l2=on,cluster_size=65536", true, 7)]
    [InlineData("extended_l2=on,cluster_size=16384", false, 8)]
    [InlineData("lazy_refcounts=on,cluster_size=4096", true, 9)]
    [InlineData("cluster_size=4096,snapshot", false, 10)]
    [InlineData("extended_l2=on,cluster_size=32768,snapshot", true, 11)]
    [InlineData("cluster_size=4096,tinycache", true, 12)]
    public async Task SameOperationsGiveEqualCleanImages(string options, bool withBacking, int seed)
    {
        // "tinycache": our node runs with the smallest caches, so dirty tables are written back under pressure.
        var tinyCache = options.EndsWith(",tinycache", StringComparison.Ordinal);
        options = tinyCache ? options[..^",tinycache".Length] : options;
        // "snapshot": the image holds data and an internal snapshot before the operations start.
        var snapshot = options.EndsWith(",snapshot", StringComparison.Ordinal);
        options = snapshot ? options[..^",snapshot".Length] : options;
        using var dir = new TempDir();
        var create = new List<string> { "create", "-f", "qcow2", "-o", options };
        if (withBacking)
        {
            Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], "5M");
            Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0xb1 0 5M", "-c", "write -z 1M 512k", dir["base.qcow2"]);
            create.AddRange(["-b", "base.qcow2", "-F", "qcow2"]);
        }

        create.AddRange([dir["ours.qcow2"], Size.ToString(CultureInfo.InvariantCulture)]);
        Ok("qemu-img", [.. create]);
        if (snapshot)
        {
            Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x5e 0 4M", dir["ours.qcow2"]);
            Ok("qemu-img", "snapshot", "-c", "before", dir["ours.qcow2"]);
        }

        File.Copy(dir["ours.qcow2"], dir["theirs.qcow2"]);
        var cluster = int.Parse(options.Split(',').FirstOrDefault(o => o.StartsWith("cluster_size=", StringComparison.Ordinal))?[13..] ?? "65536", CultureInfo.InvariantCulture);
        var ops = MakeOps(seed, 300, cluster);

        var args = new List<string> { "-f", "qcow2", "-d", "unmap" };
        foreach (var op in ops)
        {
            args.AddRange(["-c", ToQemuIo(op)]);
        }

        args.Add(dir["theirs.qcow2"]);
        Ok("qemu-io", [.. args]);

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(dir["ours.qcow2"], tinyCache ? """{"l2-cache-size": 8192, "refcount-cache-size": 16384}""" : null);
            node.DiscardUnmap = true;
            foreach (var op in ops)
            {
                await Apply(node, op);
            }

            var expected = ConvertToRaw(dir["theirs.qcow2"], dir.Path);
            var actual = await Qcow2Harness.ReadAllAsync(node);
            Assert.True(expected.AsSpan().SequenceEqual(actual), "content read back differs from qemu-io's image");
            await h.Graph.CloseAllAsync();
            h.Save(dir["ours.qcow2"]);
        }

        var (code, output) = Check(dir["ours.qcow2"]);
        Assert.True(code == 0, "qemu-img check of our image: " + output);
        (code, output) = Check(dir["theirs.qcow2"]);
        Assert.True(code == 0, "qemu-img check of qemu's image: " + output);
        (code, output) = Run("qemu-img", "compare", "-U", dir["ours.qcow2"], dir["theirs.qcow2"]);
        Assert.True(code == 0, "qemu-img compare: " + output);
        if (snapshot)
        {
            Assert.Equal(ConvertToRaw(dir["theirs.qcow2"], dir.Path, "before"), ConvertToRaw(dir["ours.qcow2"], dir.Path, "before"));
        }
    }
}
