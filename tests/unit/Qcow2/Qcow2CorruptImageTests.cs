using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Damaged images are refused with an error naming the field; inconsistencies found while writing mark the image corrupt.</summary>
public sealed class Qcow2CorruptImageTests
{
    private static byte[] Fresh(TempDir dir, string options = "cluster_size=65536")
    {
        Ok("qemu-img", "create", "-f", "qcow2", "-o", options, dir["x.qcow2"], "16M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 128k", dir["x.qcow2"]);
        return File.ReadAllBytes(dir["x.qcow2"]);
    }

    private static async Task<BlockException> OpenFails(byte[] image, bool readOnly = true)
    {
        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = image;
        return await Assert.ThrowsAsync<BlockException>(() => h.OpenAsync("img", readOnly: readOnly));
    }

    [Fact]
    public async Task TruncatedHeader()
    {
        using var dir = new TempDir();
        var e = await OpenFails(Fresh(dir)[..50]);
        Assert.Contains("header truncated", e.Message);
    }

    [Theory]
    [InlineData(40, 8, 0x10000000L, "l1_table_offset")]
    [InlineData(40, 8, 0x10001L, "l1_table_offset")]
    [InlineData(48, 8, 0L, "refcount_table_offset")]
    [InlineData(24, 8, 1L << 62, "size")]
    [InlineData(36, 4, 0xffffffffL, "l1_size")]
    [InlineData(20, 4, 30L, "cluster_bits")]
    [InlineData(56, 4, 0x10000000L, "refcount_table_clusters")]
    [InlineData(96, 4, 9L, "refcount_order")]
    [InlineData(60, 4, 0x7fffffffL, "Snapshot table too large")]
    [InlineData(64, 8, 0x12345L, "Snapshot table offset invalid")]
    public async Task BadFieldIsNamed(int offset, int width, long value, string field)
    {
        using var dir = new TempDir();
        var image = Fresh(dir);
        if (width == 8)
        {
            BinaryPrimitives.WriteInt64BigEndian(image.AsSpan(offset), value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(offset), (uint)value);
        }

        var e = await OpenFails(image);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public async Task UnknownIncompatibleFeatureIsRefused()
    {
        using var dir = new TempDir();
        var image = Fresh(dir);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(72), 1UL << 40);
        var e = await OpenFails(image);
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Contains("incompatible features", e.Message);
    }

    [Fact]
    public async Task BackingLoopIsRefused()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["b.qcow2"], "1M");
        Ok("qemu-img", "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", dir["a.qcow2"]);
        var bytes = File.ReadAllBytes(dir["b.qcow2"]);
        var header = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "b");
        header.BackingFile = "a.qcow2";
        header.BackingFormat = "qcow2";
        header.Write(bytes.AsSpan(0, 65536));
        File.WriteAllBytes(dir["b.qcow2"], bytes);

        await using var h = new Qcow2Harness();
        var e = await Assert.ThrowsAsync<BlockException>(() => h.OpenAsync(dir["a.qcow2"], readOnly: true));
        Assert.Contains("backing file loop", e.Message);
    }

    [Fact]
    public async Task CorruptBitRefusesReadWriteButAllowsReading()
    {
        using var dir = new TempDir();
        var image = Fresh(dir);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(72), 2);
        var e = await OpenFails(image, readOnly: false);
        Assert.Contains("corrupt", e.Message);

        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img", readOnly: true);
        var buf = new byte[4];
        await node.ReadAsync(0, buf);
        Assert.Equal(0x5a, buf[0]);
    }

    [Fact]
    public async Task GarbageCompressedClusterIsAnIoError()
    {
        using var dir = new TempDir();
        var raw = dir["r.raw"];
        File.WriteAllBytes(raw, Enumerable.Range(0, 1 << 20).Select(i => (byte)(i % 7)).ToArray());
        Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, dir["c.qcow2"]);
        var bytes = File.ReadAllBytes(dir["c.qcow2"]);
        Assert.True(bytes.Length < 6 * 65536, "the data should be stored compressed");

        // Overwrite everything after the metadata clusters (where compressed data lives) with garbage.
        new Random(1).NextBytes(bytes.AsSpan(5 * 65536));
        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = bytes;
        var node = await h.OpenAsync("img", readOnly: true);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(0, new byte[4096]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
    }

    [Fact]
    public async Task RefcountUnderflowWhileWritingMarksTheImageCorrupt()
    {
        using var dir = new TempDir();
        var image = Fresh(dir);

        // Layout of a fresh 64 KiB-cluster image: refcount block at 0x20000, first data cluster at 0x50000.
        var map = Ok("qemu-img", "map", "--output=json", "-U", dir["x.qcow2"]);
        Assert.Contains("\"offset\": 327680", map);
        BinaryPrimitives.WriteUInt16BigEndian(image.AsSpan(0x20000 + (5 * 2)), 0);

        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img");
        node.DiscardUnmap = true;
        var e = await Assert.ThrowsAsync<BlockException>(() => node.DiscardAsync(0, 65536).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Contains("corrupt", e.Message);
        Assert.NotNull(node.CorruptReason);
        e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[512]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        var stored = h.Files.Opened["img"].Snapshot();
        Assert.Equal(2UL, BinaryPrimitives.ReadUInt64BigEndian(stored.AsSpan(72)) & 2);
    }

    /// <summary>
    /// A fresh image with its first two L2 entries (at 0x40000) pointing 512 bytes past their clusters,
    /// the second with the zero flag: both are corruption to QEMU, not data and not zeroes.
    /// </summary>
    private static byte[] UnalignedEntries(TempDir dir)
    {
        var image = Fresh(dir);
        Assert.Equal(0x40000UL, BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(0x30000)) & Qcow2Format.OffsetMask);
        var e0 = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(0x40000));
        var e1 = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(0x40008));
        Assert.Equal((0x8000000000050000UL, 0x8000000000060000UL), (e0, e1));
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(0x40000), e0 + 0x200);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(0x40008), e1 + 0x200 + Qcow2Format.FlagZero);
        return image;
    }

    [Fact]
    public async Task UnalignedHostOffsetOfAWritableImageIsEioAndFatalCorruption()
    {
        using var dir = new TempDir();
        await using var h = new Qcow2Harness();
        var events = new List<(string Name, string Data)>();
        h.Graph.EventSink = (name, data) => events.Add((name, data.ToJsonString()));
        h.Files.Files["img"] = UnalignedEntries(dir);
        var node = await h.OpenAsync("img", """{"node-name":"disk"}""");

        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(0, new byte[4096]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        const string Msg = "Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)";
        Assert.Equal([("BLOCK_IMAGE_CORRUPTED", $$"""{"device":"","node-name":"disk","msg":"{{Msg}}","fatal":true}""")], events);
        Assert.Equal(2UL, BinaryPrimitives.ReadUInt64BigEndian(h.Files.Opened["img"].Snapshot().AsSpan(72)) & 2);

        // The zero flag does not excuse an unaligned offset; one fatal event is all QEMU sends.
        e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(65536, new byte[4096]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(1 << 20, new byte[512]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Single(events);
        Assert.Equal(Msg, node.CorruptReason);
    }

    [Fact]
    public async Task UnalignedHostOffsetOfAReadOnlyImageIsEioAndLeavesTheHeaderAlone()
    {
        using var dir = new TempDir();
        await using var h = new Qcow2Harness();
        var events = new List<string>();
        h.Graph.EventSink = (name, data) => events.Add(data.ToJsonString());
        var image = UnalignedEntries(dir);
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img", readOnly: true);

        foreach (var offset in new long[] { 65536, 0 })
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(offset, new byte[512]).AsTask());
            Assert.Equal(Errno.EIO, e.Errno);
        }

        var data = Assert.Single(events);
        Assert.Contains("0x60200 unaligned (L2 offset: 0x40000, L2 index: 0x1)", data);
        Assert.Contains("\"fatal\":false", data);
        Assert.Null(node.CorruptReason);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(72)) & 2);
    }

    [Fact]
    public async Task UnalignedL2TableOffsetIsCorruption()
    {
        using var dir = new TempDir();
        await using var h = new Qcow2Harness();
        var events = new List<string>();
        h.Graph.EventSink = (name, data) => events.Add(data["msg"]!.GetValue<string>());
        var image = Fresh(dir);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(0x30000), 0x8000000000040200UL);
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img");
        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(0, new byte[512]).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Equal(["L2 table offset 0x40200 unaligned (L1 index: 0)"], events);
    }

    /// <summary>As in QEMU, an L2 table past the end of the file reads as an empty table: the guest sees zeroes, not EINVAL.</summary>
    [Fact]
    public async Task L2TablePastTheEndOfTheFileReadsAsUnallocated()
    {
        using var dir = new TempDir();
        await using var h = new Qcow2Harness();
        var image = Fresh(dir);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(0x30000), 0x8000000001000000UL);
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img", readOnly: true);
        var buf = new byte[4096];
        buf.AsSpan().Fill(0xff);
        await node.ReadAsync(0, buf);
        Assert.All(buf, b => Assert.Equal(0, b));
    }

    /// <summary>An image with one persistent bitmap (made by qemu-img), and where its bitmaps extension's data starts.</summary>
    private static (byte[] Image, int Ext) WithBitmap(TempDir dir)
    {
        var image = Fresh(dir);
        File.WriteAllBytes(dir["x.qcow2"], image);
        Ok("qemu-img", "bitmap", "--add", dir["x.qcow2"], "b0");
        image = File.ReadAllBytes(dir["x.qcow2"]);
        var pos = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(100));
        while (BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(pos)) != 0x23852875)
        {
            pos += 8 + (int)((BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(pos + 4)) + 7) & ~7u);
        }

        return (image, pos + 8);
    }

    /// <summary>Each case is a field of the bitmaps extension (or of the directory it points to) and qemu-img 7.2's refusal.</summary>
    [Theory]
    [InlineData("nb_bitmaps", 0L, "found bitmaps extension with zero bitmaps")]
    [InlineData("nb_bitmaps", 65536L, "bitmaps_ext: Image has 65536 bitmaps, exceeding the QEMU supported maximum of 65535")]
    [InlineData("nb_bitmaps", 2L, "Less bitmaps found than specified in header extension")]
    [InlineData("reserved", 1L, "bitmaps_ext: Reserved field is not zero")]
    [InlineData("length", 16L, "bitmaps_ext: Invalid extension length")]
    [InlineData("directory_size", 67107841L, "bitmaps_ext: bitmap directory size (67107841) exceeds the maximum supported size (67107840)")]
    [InlineData("directory_size", 0L, "Requested bitmap directory size is zero")]
    [InlineData("directory_size", 8L, "Broken bitmap directory")]
    [InlineData("directory_offset", 0x50008L, "bitmaps_ext: invalid bitmap directory offset")]
    [InlineData("directory_offset", 0x1000000L, "Bitmap '' doesn't satisfy the constraints")]
    [InlineData("entry.table_offset", 0x12345L, "Bitmap 'b0' doesn't satisfy the constraints")]
    [InlineData("entry.extra_data_size", 8L, "Broken bitmap directory")]
    [InlineData("entry.extra_data_size+directory_size", 8L, "Bitmap extra data is not supported")]
    public async Task BitmapsExtensionIsCheckedAsQemuChecksIt(string field, long value, string message)
    {
        using var dir = new TempDir();
        var (image, ext) = WithBitmap(dir);
        var directory = (int)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(ext + 16));
        switch (field)
        {
            case "nb_bitmaps": BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(ext), (uint)value); break;
            case "reserved": BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(ext + 4), (uint)value); break;
            case "length": BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(ext - 4), (uint)value); break;
            case "directory_size": BinaryPrimitives.WriteInt64BigEndian(image.AsSpan(ext + 8), value); break;
            case "directory_offset": BinaryPrimitives.WriteInt64BigEndian(image.AsSpan(ext + 16), value); break;
            case "entry.table_offset": BinaryPrimitives.WriteInt64BigEndian(image.AsSpan(directory), value); break;
            case "entry.extra_data_size": BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(directory + 20), (uint)value); break;
            case "entry.extra_data_size+directory_size":
                BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(directory + 20), (uint)value);
                BinaryPrimitives.WriteInt64BigEndian(image.AsSpan(ext + 8), BinaryPrimitives.ReadInt64BigEndian(image.AsSpan(ext + 8)) + value);
                break;
        }

        var e = await OpenFails(image);
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.EndsWith(message, e.Message);
    }

    [Fact]
    public async Task BitmapsOfAnImageWrittenWithoutThemAreIgnored()
    {
        using var dir = new TempDir();
        var (image, ext) = WithBitmap(dir);
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(ext), 0);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(88), 0);
        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img", readOnly: true);
        Assert.Equal(16L << 20, node.Length);
    }

    [Fact]
    public async Task HeaderExtensionLargerThanTheClusterIsRefused()
    {
        using var dir = new TempDir();
        var image = Fresh(dir);
        var first = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(100));
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(first + 4), (uint)(65536 - first - 8 + 1));
        var e = await OpenFails(image);
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("Header extension too large", e.Message);
    }

    /// <summary>backing_file_offset set with a zero length, or a name that starts with NUL, is no backing file, as in QEMU.</summary>
    [Theory]
    [InlineData(0u)]
    [InlineData(4u)]
    public async Task EmptyBackingFileNameIsNoBackingFile(uint size)
    {
        using var dir = new TempDir();
        var image = Fresh(dir);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(8), 0x300);
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(16), size);
        image.AsSpan(0x300, 8).Clear();
        await using var h = new Qcow2Harness();
        h.Files.Files["img"] = image;
        var node = await h.OpenAsync("img", readOnly: true);
        Assert.Null(node.Header.BackingFile);
        Assert.Null(node.BackingChild);
        var buf = new byte[4];
        await node.ReadAsync(0, buf);
        Assert.Equal(0x5a, buf[0]);
    }
}
