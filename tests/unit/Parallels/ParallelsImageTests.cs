using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Parallels;
using ExportServer.UnitTests.Qcow2;
using Xunit;

namespace ExportServer.UnitTests.Parallels;

/// <summary>Parallels images made in memory by our creator: the inuse mark, BAT entries written after their data, hostile headers refused.</summary>
public sealed class ParallelsImageTests
{
    private const int Cluster = 65536;

    private static async Task<InMemoryFileNode> CreateAsync(long size, bool mapAll = false)
    {
        var file = new InMemoryFileNode("f", "/tmp/img.parallels", [], readOnly: false);
        await ParallelsCreator.CreateAsync(file, new ParallelsCreateOptions { Size = size, ClusterSize = Cluster, MapAll = mapAll });
        return file;
    }

    private static Task<ParallelsNode> OpenAsync(InMemoryFileNode file, bool readOnly) =>
        ParallelsNode.OpenAsync("p", readOnly, file, preallocByZeroes: false, preallocSize: 0).AsTask();

    /// <summary>A copy of <paramref name="file"/> with the 32-bit little-endian <paramref name="value"/> at <paramref name="offset"/>.</summary>
    private static InMemoryFileNode Patched(InMemoryFileNode file, long offset, uint value)
    {
        var image = file.Snapshot();
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((int)offset), value);
        return new InMemoryFileNode("f", "/tmp/img.parallels", image, readOnly: false);
    }

    private static uint Le32(byte[] image, long offset) => BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan((int)offset));

    [Fact]
    public async Task WritesMapClustersAtTheEndAndCloseCleanly()
    {
        var file = await CreateAsync(10 << 20);
        Assert.Equal(Cluster, file.Length);
        var node = await OpenAsync(file, readOnly: false);
        Assert.Equal(ParallelsFormat.InUseMagic, Le32(file.Snapshot(), 44));

        var data = new byte[Cluster + 5000];
        new Random(5).NextBytes(data);
        await node.WriteAsync(3 * Cluster + 512, data);
        // The entries reach the file at the flush, after the data: two clusters, numbered from the data start.
        Assert.Equal(0u, Le32(file.Snapshot(), ParallelsFormat.EntryOffset(3)));
        await node.FlushAsync();
        var image = file.Snapshot();
        Assert.Equal(1u, Le32(image, ParallelsFormat.EntryOffset(3)));
        Assert.Equal(2u, Le32(image, ParallelsFormat.EntryOffset(4)));
        Assert.Equal(0u, Le32(image, ParallelsFormat.EntryOffset(5)));
        Assert.True((await node.GetBlockStatusAsync(0, 3 * Cluster)) is { IsData: false, Length: 3 * Cluster });

        await node.DisposeAsync();
        Assert.Equal(0u, Le32(file.Snapshot(), 44));
        Assert.Equal(3L * Cluster, file.Length);
        var back = new byte[data.Length + 1024];
        await (await OpenAsync(file, readOnly: true)).ReadAsync(3 * Cluster, back);
        Assert.Equal(new byte[512], back[..512]);
        Assert.Equal(data, back[512..(512 + data.Length)]);
        Assert.Equal(new byte[512], back[(512 + data.Length)..]);
    }

    [Fact]
    public async Task MetadataPreallocationMapsEveryClusterInOrder()
    {
        var file = await CreateAsync(1 << 20, mapAll: true);
        var image = file.Snapshot();
        Assert.Equal(17L * Cluster, file.Length);
        for (var i = 0; i < 16; i++)
        {
            Assert.Equal((uint)(i + 1), Le32(image, ParallelsFormat.EntryOffset(i)));
        }

        var node = await OpenAsync(file, readOnly: false);
        await node.WriteAsync(Cluster * 15, new byte[] { 1, 2, 3 }.Concat(new byte[509]).ToArray());
        await node.DisposeAsync();
        Assert.Equal(17L * Cluster, file.Length);
        Assert.Equal(1, file.Snapshot()[16 * Cluster]);
    }

    [Fact]
    public async Task ImageMarkedInUseOpensOnlyReadOnly()
    {
        var file = Patched(await CreateAsync(1 << 20), 44, ParallelsFormat.InUseMagic);
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(file, readOnly: false));
        Assert.Equal(Errno.EACCES, e.Errno);
        Assert.Equal("parallels: Image was not closed correctly; cannot be opened read/write", e.Message);
        await OpenAsync(file, readOnly: true);
    }

    /// <summary>Hostile headers: (offset, 32-bit value, message).</summary>
    [Theory]
    [InlineData(16, 1u, "Image not in Parallels format")]
    [InlineData(28, 0u, "Invalid image: Zero sectors per track")]
    [InlineData(28, 0x7fffffffu, "Invalid image: Too big cluster")]
    [InlineData(32, 0x7fffffffu, "Catalog too large")]
    [InlineData(32, 0x1000000u, "parallels: the BAT (16777216 entries) of '/tmp/img.parallels' extends beyond the end of the file")]
    public async Task HostileHeadersAreRefusedNamingTheField(int offset, uint value, string message)
    {
        var file = Patched(await CreateAsync(1 << 20), offset, value);
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync(file, readOnly: true));
        Assert.Equal(message, e.Message);
    }

    /// <summary>A BAT entry pointing into the BAT or past the file is an I/O error on use, never a read of metadata as data.</summary>
    [Fact]
    public async Task EntriesOutsideTheDataAreIoErrors()
    {
        var file = Patched(await CreateAsync(1 << 20), ParallelsFormat.EntryOffset(0), 1000);
        var node = await OpenAsync(file, readOnly: true);
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.ReadAsync(0, new byte[512]));
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Contains("is outside the image", e.Message);
    }
}
