using System.Buffers.Binary;
using System.IO.Compression;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Dmg;
using ExportServer.UnitTests.Qcow2;
using Xunit;

namespace ExportServer.UnitTests.Dmg;

/// <summary>dmg images laid out here byte by byte (one mish block in a resource fork): chunk types read, hostile tables refused.</summary>
public sealed class DmgImageTests
{
    /// <summary>The disk: 4 sectors zlib, 2 raw, 3 zero, 1 of a type given by the test.</summary>
    private static (byte[] Image, byte[] Disk) Build(uint lastType = 1, ulong firstSectorCount = 4)
    {
        var rnd = new Random(9);
        var zlibPlain = new byte[4 * 512];
        rnd.NextBytes(zlibPlain);
        var raw = new byte[2 * 512];
        rnd.NextBytes(raw);
        var last = new byte[512];
        rnd.NextBytes(last);
        using var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(zlibPlain);
        }

        var compressed = ms.ToArray();
        var data = compressed.Concat(raw).Concat(last).ToArray();
        (uint Type, ulong Sector, ulong Count, ulong Offset, ulong Length)[] rows =
        [
            (0x80000005, 0, firstSectorCount, 0, (ulong)compressed.Length),
            (1, 4, 2, (ulong)compressed.Length, 1024),
            (0, 6, 3, 0, 0),
            (lastType, 9, 1, (ulong)compressed.Length + 1024, 512),
            (0xffffffff, 10, 0, 0, 0),
        ];
        var mish = new byte[204 + (rows.Length * 40)];
        BinaryPrimitives.WriteUInt32BigEndian(mish, 0x6d697368);
        BinaryPrimitives.WriteUInt64BigEndian(mish.AsSpan(0x10), 10);
        for (var i = 0; i < rows.Length; i++)
        {
            var r = mish.AsSpan(204 + (i * 40));
            BinaryPrimitives.WriteUInt32BigEndian(r, rows[i].Type);
            BinaryPrimitives.WriteUInt64BigEndian(r[8..], rows[i].Sector);
            BinaryPrimitives.WriteUInt64BigEndian(r[0x10..], rows[i].Count);
            BinaryPrimitives.WriteUInt64BigEndian(r[0x18..], rows[i].Offset);
            BinaryPrimitives.WriteUInt64BigEndian(r[0x20..], rows[i].Length);
        }

        // Resource fork: data offset 16, then one resource (its length, the mish block).
        var fork = new byte[16 + 4 + mish.Length];
        BinaryPrimitives.WriteUInt32BigEndian(fork, 16);
        BinaryPrimitives.WriteUInt32BigEndian(fork.AsSpan(8), (uint)(4 + mish.Length));
        BinaryPrimitives.WriteUInt32BigEndian(fork.AsSpan(16), (uint)mish.Length);
        mish.CopyTo(fork, 20);
        var koly = new byte[512];
        "koly"u8.CopyTo(koly);
        BinaryPrimitives.WriteUInt64BigEndian(koly.AsSpan(0x28), (ulong)data.Length);
        BinaryPrimitives.WriteUInt64BigEndian(koly.AsSpan(0x30), (ulong)fork.Length);
        BinaryPrimitives.WriteUInt64BigEndian(koly.AsSpan(0x1ec), 10);
        var disk = zlibPlain.Concat(raw).Concat(new byte[3 * 512]).Concat(last).ToArray();
        return ([.. data, .. fork, .. koly], disk);
    }

    private static Task<DmgNode> OpenAsync(byte[] image) =>
        DmgNode.OpenAsync("d", new InMemoryFileNode("f", "/tmp/img.dmg", image, readOnly: true)).AsTask();

    [Fact]
    public async Task ChunksReadAsTheDisk()
    {
        var (image, disk) = Build();
        var node = await OpenAsync(image);
        Assert.Equal(disk.Length, node.Length);
        var all = new byte[disk.Length];
        await node.ReadAsync(0, all);
        Assert.Equal(disk, all);

        // Pieces that cross chunks, read out of order (the decoded chunk is kept between them).
        var piece = new byte[1536];
        await node.ReadAsync(1024 * 3, piece);
        Assert.Equal(disk.AsSpan(1024 * 3, 1536).ToArray(), piece);
        await node.ReadAsync(0, piece);
        Assert.Equal(disk.AsSpan(0, 1536).ToArray(), piece);
    }

    [Theory]
    [InlineData(0x80000004u, "ADC-compressed")]
    [InlineData(0x80000007u, "lzfse-compressed")]
    [InlineData(0x12345u, "of unknown type 0x12345")]
    public async Task ChunkTypesWeCannotDecodeAreNamedOnRead(uint type, string name)
    {
        var (image, disk) = Build(lastType: type);
        var node = await OpenAsync(image);
        var first = new byte[9 * 512];
        await node.ReadAsync(0, first);
        Assert.Equal(disk[..first.Length], first);
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.ReadAsync(9 * 512, new byte[512]));
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Equal($"dmg: chunk 3 of '/tmp/img.dmg' is {name}, which is not supported", e.Message);
    }

    [Fact]
    public async Task StreamOfTheWrongSizeIsAnIoError()
    {
        var (image, _) = Build(firstSectorCount: 5);
        var node = await OpenAsync(image);
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.ReadAsync(0, new byte[512]));
        Assert.Equal("dmg: zlib-compressed chunk 0 of '/tmp/img.dmg' does not decode to 2560 bytes", e.Message);
    }

    [Fact]
    public async Task HostileTablesAreRefusedWithoutAllocatingThem()
    {
        var (image, _) = Build(firstSectorCount: 1UL << 40);
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(image));
        Assert.Equal("dmg: invalid chunk table in '/tmp/img.dmg': sector count 1099511627776 for chunk 0 is larger than max (131072)", e.Message);

        (image, _) = Build();
        var koly = image.Length - 512;
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(koly + 0x30), ulong.MaxValue);
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(image));
        Assert.StartsWith("dmg: invalid UDIF trailer: resource fork", e.Message);

        (image, _) = Build();
        var fork = (int)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(koly + 0x28));
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(fork + 16), 0x7fffffff);
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(image));
        Assert.Contains("has length 2147483647, beyond the resource data", e.Message);

        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(new byte[511]));
        Assert.Equal("dmg file must be at least 512 bytes long", e.Message);
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(new byte[4096]));
        Assert.Equal("Could not locate UDIF trailer in dmg file", e.Message);
    }
}
