using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Vpc;
using ExportServer.UnitTests.Qcow2;
using Xunit;

namespace ExportServer.UnitTests.Vpc;

/// <summary>
/// VHD images made in memory by our creator: geometry as QEMU computes it, reads and writes through
/// the node, and hostile headers refused with an error that names the field.
/// </summary>
public sealed class VpcImageTests
{
    private const int Footer = 512;
    private const int DynamicHeader = 512;
    private const int Table = 1536;

    private static async Task<InMemoryFileNode> CreateAsync(long size, bool isFixed = false, bool forceSize = false)
    {
        var file = new InMemoryFileNode("f", "/tmp/img.vpc", [], readOnly: false);
        await VpcCreator.CreateAsync(file, new VpcCreateOptions { Size = size, Fixed = isFixed, ForceSize = forceSize });
        return file;
    }

    private static ValueTask<VpcNode> OpenAsync(byte[] image, bool readOnly = true) =>
        VpcNode.OpenAsync("v", readOnly, new InMemoryFileNode("f", "/tmp/img.vpc", image, readOnly));

    private static async Task<string> OpenErrorAsync(byte[] image)
    {
        var e = await Assert.ThrowsAsync<BlockException>(async () => await OpenAsync(image));
        return e.Message;
    }

    /// <summary>Rewrites the checksum of the structure at <paramref name="at"/> after a field was changed.</summary>
    private static void Reseal(byte[] image, int at, int length, int checksumOffset) =>
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(at + checksumOffset), VpcFormat.Checksum(image.AsSpan(at, length), checksumOffset));

    private static void SetDynamic(byte[] image, int field, uint value, bool wide = false)
    {
        if (wide)
        {
            BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(DynamicHeader + field), value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(DynamicHeader + field), value);
        }

        Reseal(image, DynamicHeader, 1024, VpcDynamicHeader.OffChecksum);
    }

    [Theory]
    [InlineData(10L << 20, 10514432L)] // qemu-img create -f vpc x 10M
    [InlineData(64L << 20, 67125248L)]
    [InlineData(1L << 30, 1073995776L)]
    [InlineData(200L << 30, 200L << 30)] // beyond every CHS geometry: the size itself
    public void NewImageSizesAreQemus(long asked, long expected) =>
        Assert.Equal(expected, VpcGeometry.ForNewImage(asked, forceSize: false).Sectors * 512);

    [Fact]
    public async Task SizeNotRepresentableInChsIsRefusedWithAHint()
    {
        var e = await Assert.ThrowsAsync<BlockException>(async () => await CreateAsync(10L << 20));
        Assert.Equal("The requested image size cannot be represented in CHS geometry", e.Message);
        Assert.Contains("Try size=10514432 or force-size=on", e.Hint);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WritesReadBackAcrossBlocksAndSurviveReopening(bool isFixed)
    {
        var file = await CreateAsync(10485760, isFixed, forceSize: true);
        var node = await VpcNode.OpenAsync("v", false, file);
        Assert.Equal(10485760, node.Length);
        var data = new byte[3 << 20];
        new Random(5).NextBytes(data);
        await node.WriteAsync(1000, data);
        await node.WriteAsync(9 << 20, data.AsMemory(0, 4096));
        await node.FlushAsync();
        var reopened = await VpcNode.OpenAsync("v", true, file);
        var back = new byte[data.Length];
        await reopened.ReadAsync(1000, back);
        Assert.Equal(data, back);
        var head = new byte[1000];
        await reopened.ReadAsync(0, head);
        Assert.All(head, b => Assert.Equal(0, b));
        if (!isFixed)
        {
            var status = await reopened.GetBlockStatusAsync(6 << 20, 2 << 20);
            Assert.True(status.IsZero && !status.IsData);
            Assert.True((await reopened.GetBlockStatusAsync(2 << 20, 1)).IsData);

            // Every allocated block is followed by the footer at the new end of the file.
            var bytes = file.Snapshot();
            Assert.Equal(bytes.AsSpan(0, Footer).ToArray(), bytes.AsSpan(bytes.Length - Footer).ToArray());
            Assert.Equal(Table + 512 + (3 * (512 + (2 << 20))) + Footer, bytes.Length);
        }
    }

    [Fact]
    public async Task DifferencingDiskIsRefusedNamingItsParent()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        foreach (var at in new[] { 0, image.Length - Footer })
        {
            BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(at + 60), VpcFormat.DiskDifferencing);
            Reseal(image, at, Footer, VpcFooter.OffChecksum);
        }

        System.Text.Encoding.BigEndianUnicode.GetBytes("base.vhd").CopyTo(image.AsSpan(DynamicHeader + 64));
        Reseal(image, DynamicHeader, 1024, VpcDynamicHeader.OffChecksum);
        var e = await Assert.ThrowsAsync<BlockException>(async () => await OpenAsync(image));
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Equal("vpc: differencing images are not supported (parent 'base.vhd')", e.Message);
    }

    [Fact]
    public async Task BadFooterChecksumIsRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        image[40] ^= 1;
        Assert.StartsWith("Incorrect header checksum", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task BadDynamicHeaderChecksumIsRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        image[DynamicHeader + 30] ^= 1;
        Assert.StartsWith("Incorrect dynamic disk header checksum", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task BlockSizeNotAPowerOfTwoIsRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        SetDynamic(image, 32, 3 << 20);
        Assert.Equal("Invalid block size 3145728", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task HugeTableIsRefusedBeforeAnythingIsAllocated()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        SetDynamic(image, 28, 0x1fff_ffff);
        Assert.Contains("max table entries) extends beyond the end of the file", await OpenErrorAsync(image));
        SetDynamic(image, 28, 0x7fff_ffff);
        Assert.Equal("Max Table Entries too large (2147483647)", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task TableTooSmallForTheDiskIsRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        SetDynamic(image, 28, 2);
        Assert.Equal("Page table too small", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task OffsetsBeyondTheFileAreRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        var table = (byte[])image.Clone();
        SetDynamic(table, 16, 1 << 30, wide: true);
        Assert.Contains("table offset 0x40000000", await OpenErrorAsync(table));

        var header = (byte[])image.Clone();
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), 1UL << 40);
        Reseal(header, 0, Footer, VpcFooter.OffChecksum);
        Assert.Contains("dynamic disk header offset 0x10000000000 (footer data offset)", await OpenErrorAsync(header));

        var block = (byte[])image.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(Table + 4), 0x100000);
        Assert.Contains("free_data_block_offset points after the end of file", await OpenErrorAsync(block));
    }

    [Fact]
    public async Task BlockOverlappingTheMetadataIsRefused()
    {
        var image = (await CreateAsync(10514432)).Snapshot();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(Table), 1);
        Assert.Equal("vpc: BAT entry 0 (block at offset 0x200) overlaps the dynamic disk header", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task VirtualSizeBeyond2040GiBIsRefused()
    {
        var image = (await CreateAsync(10485760, forceSize: true)).Snapshot();
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(48), 4UL << 40);
        Reseal(image, 0, Footer, VpcFooter.OffChecksum);
        var e = await Assert.ThrowsAsync<BlockException>(async () => await OpenAsync(image));
        Assert.Equal(Errno.EFBIG, e.Errno);
        Assert.Contains("virtual size 4398046511104", e.Message);
    }

    [Fact]
    public async Task FixedImageShorterThanItsSizeIsRefused()
    {
        var full = (await CreateAsync(10485760, isFixed: true, forceSize: true)).Snapshot();
        var image = full.AsSpan(full.Length - (1 << 20) - Footer).ToArray();
        Assert.Contains("less than its virtual size 10485760", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task NoFooterAnywhereIsNotAVpcImage()
    {
        Assert.Equal("invalid VPC image", await OpenErrorAsync(new byte[4096]));
        Assert.Equal("File too small for a VHD header", await OpenErrorAsync(new byte[100]));
    }
}
