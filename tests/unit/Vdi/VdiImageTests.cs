using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Vdi;
using ExportServer.UnitTests.Qcow2;
using Xunit;

namespace ExportServer.UnitTests.Vdi;

/// <summary>VDI images made in memory by our creator: writes through the node, and hostile headers refused naming the field.</summary>
public sealed class VdiImageTests
{
    private const int Map = 512;

    private static async Task<InMemoryFileNode> CreateAsync(long size, bool isStatic = false)
    {
        var file = new InMemoryFileNode("f", "/tmp/img.vdi", [], readOnly: false);
        await VdiCreator.CreateAsync(file, new VdiCreateOptions { Size = size, Static = isStatic });
        return file;
    }

    private static async Task<BlockException> OpenErrorAsync(byte[] image) =>
        await Assert.ThrowsAsync<BlockException>(async () => await VdiNode.OpenAsync("v", true, new InMemoryFileNode("f", "/tmp/img.vdi", image, true)));

    private static void Set(byte[] image, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(offset), value);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WritesReadBackAndCountTheirBlocks(bool isStatic)
    {
        var file = await CreateAsync(10 << 20, isStatic);
        var node = await VdiNode.OpenAsync("v", false, file);
        var data = new byte[(2 << 20) + 777];
        new Random(3).NextBytes(data);
        await node.WriteAsync(5000, data);
        if (!isStatic)
        {
            // New blocks are mapped on disk only by the next flush, once their data is there.
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(file.Snapshot().AsSpan(VdiHeader.OffBlocksAllocated)));
        }

        await node.FlushAsync();
        var back = new byte[data.Length];
        await (await VdiNode.OpenAsync("v", true, file)).ReadAsync(5000, back);
        Assert.Equal(data, back);
        var header = file.Snapshot();
        Assert.Equal(isStatic ? 10u : 3u, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(VdiHeader.OffBlocksAllocated)));
        if (!isStatic)
        {
            // Blocks are numbered in the order they were written; the fourth guest block is still unallocated.
            Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(Map + 8)));
            Assert.Equal(VdiFormat.Unallocated, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(Map + 12)));
            Assert.True((await node.GetBlockStatusAsync(4 << 20, 6 << 20)) is { IsZero: true, IsData: false, Length: 6 << 20 });
        }
    }

    /// <summary>
    /// A block past the file's end at open is written with the data alone (the file reads zeroes
    /// there); one a kill left holding unmapped bytes (written, not flushed) is written whole when it
    /// is handed out again, so the rest of the new block reads as zeroes, not the old bytes.
    /// </summary>
    [Fact]
    public async Task NewBlocksReadZeroesAroundTheirData()
    {
        var file = await CreateAsync(10 << 20);
        var node = await VdiNode.OpenAsync("v", false, file);
        await node.WriteAsync(0, Enumerable.Repeat((byte)0xaa, 1 << 20).ToArray());
        var before = file.Stats.WriteBytes;
        await node.WriteAsync((3 << 20) + 8192, Enumerable.Repeat((byte)0xbb, 4096).ToArray());
        Assert.Equal(4096, file.Stats.WriteBytes - before);
        var killed = file.Snapshot();

        var reopened = new InMemoryFileNode("f", "/tmp/img.vdi", killed, readOnly: false);
        node = await VdiNode.OpenAsync("v", false, reopened);
        before = reopened.Stats.WriteBytes;
        await node.WriteAsync((5 << 20) + 4096, Enumerable.Repeat((byte)0xcc, 4096).ToArray());
        Assert.Equal(1 << 20, reopened.Stats.WriteBytes - before);
        var back = new byte[1 << 20];
        await node.ReadAsync(5 << 20, back);
        Assert.All(back.AsSpan(0, 4096).ToArray(), b => Assert.Equal(0, b));
        Assert.All(back.AsSpan(4096, 4096).ToArray(), b => Assert.Equal(0xcc, b));
        Assert.All(back.AsSpan(8192).ToArray(), b => Assert.Equal(0, b));
        await node.DisposeAsync();
    }

    [Fact]
    public async Task HeaderFieldsQemuRefusesAreRefusedInItsWords()
    {
        var image = (await CreateAsync(10 << 20)).Snapshot();
        (int Offset, uint Value, string Message)[] cases =
        [
            (64, 0x12345678, "Image not in VDI format (bad signature 12345678)"),
            (68, 0x00010000, "unsupported VDI image (version 1.0)"),
            (340, 0x201, "unsupported VDI image (unaligned block map offset 0x201)"),
            (344, 0x1001, "unsupported VDI image (unaligned data offset 0x1001)"),
            (360, 4096, "unsupported VDI image (sector size 4096 is not 512)"),
            (376, 2 << 20, "unsupported VDI image (block size 2097152 is not 1048576)"),
            (384, 5, "unsupported VDI image (disk size 10485760, image bitmap has room for 5242880)"),
            (428, 1, "unsupported VDI image (non-NULL link UUID)"),
            (444, 1, "unsupported VDI image (non-NULL parent UUID)"),
        ];
        foreach (var (offset, value, message) in cases)
        {
            var bad = (byte[])image.Clone();
            Set(bad, offset, value);
            Assert.Equal(message, (await OpenErrorAsync(bad)).Message);
        }
    }

    [Fact]
    public async Task HugeMapIsRefusedBeforeItIsRead()
    {
        var image = (await CreateAsync(10 << 20)).Snapshot();
        Set(image, 384, 0x2000_0000);
        Assert.Equal("unsupported VDI image (too many blocks 536870912, max is 536870784)", (await OpenErrorAsync(image)).Message);
        Set(image, 384, 0x1000_0000);
        Assert.Equal("vdi: block map (offset 0x200, 268435456 blocks in image) extends beyond the end of the file", (await OpenErrorAsync(image)).Message);
    }

    [Fact]
    public async Task OverlappingRegionsAndStrayEntriesAreRefused()
    {
        var image = (await CreateAsync(10 << 20)).Snapshot();
        var data = (byte[])image.Clone();
        Set(data, 344, 512);
        Assert.Equal("vdi: data offset 0x200 overlaps the block map", (await OpenErrorAsync(data)).Message);

        var beyond = (byte[])image.Clone();
        Set(beyond, Map + 4, 0);
        Assert.Equal("vdi: block map entry 1 points at data block 0, beyond the end of the file", (await OpenErrorAsync(beyond)).Message);

        var file = await CreateAsync(10 << 20);
        var writer = await VdiNode.OpenAsync("v", false, file);
        await writer.WriteAsync(0, new byte[] { 1 });
        await writer.FlushAsync();
        var shared = file.Snapshot();
        Set(shared, Map + 8, 0);
        Assert.Equal("vdi: block map entries 0 and 2 both point at data block 0", (await OpenErrorAsync(shared)).Message);
    }

    [Fact]
    public async Task OversizedDiskIsRefused()
    {
        var image = (await CreateAsync(10 << 20)).Snapshot();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(368), 1UL << 60);
        var e = await OpenErrorAsync(image);
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.StartsWith("Unsupported VDI image size (size is 0x1000000000000000", e.Message);
    }
}
