using ExportServer.Block.Core;
using ExportServer.UnitTests.Drivers;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>detect-zeroes in the common write path, as QEMU's bdrv_aligned_pwritev applies it.</summary>
public sealed class DetectZeroesTests
{
    private static readonly byte[] Zeroes = new byte[8192];

    [Fact]
    public async Task OffWritesZeroBuffersAsData()
    {
        var node = new CallLogNode(1 << 20);

        await node.WriteAsync(4096, Zeroes);

        Assert.Equal(["write 4096+8192 None"], node.Calls);
    }

    [Fact]
    public async Task OnTurnsAZeroWriteIntoWriteZeroesWithoutUnmap()
    {
        var node = new CallLogNode(1 << 20) { DetectZeroes = DetectZeroes.On, DiscardUnmap = true };

        await node.WriteAsync(4096, Zeroes);

        Assert.Equal(["zero 4096+8192 None"], node.Calls);
        Assert.Equal(8192, node.Stats.WriteBytes);
    }

    [Fact]
    public async Task UnmapAddsMayUnmapWhenTheNodeDiscards()
    {
        var node = new CallLogNode(1 << 20) { DetectZeroes = DetectZeroes.Unmap, DiscardUnmap = true };

        await node.WriteAsync(0, Zeroes);

        Assert.Equal(["zero 0+8192 MayUnmap"], node.Calls);
    }

    [Fact]
    public async Task UnmapNeverUnmapsOnANodeThatIgnoresDiscards()
    {
        var node = new CallLogNode(1 << 20) { DetectZeroes = DetectZeroes.Unmap, DiscardUnmap = false };

        await node.WriteAsync(0, Zeroes);

        Assert.Equal(["zero 0+8192 None"], node.Calls);
    }

    [Fact]
    public async Task OneNonZeroByteKeepsTheWriteAsItIs()
    {
        var node = new CallLogNode(1 << 20) { DetectZeroes = DetectZeroes.Unmap, DiscardUnmap = true };
        var data = new byte[8192];
        data[8191] = 1;

        await node.WriteAsync(0, data, WriteFlags.Fua);

        Assert.Equal(["write 0+8192 None", "flush"], node.Calls);
    }

    [Fact]
    public async Task FuaStaysWithTheDetectedZeroWrite()
    {
        var node = new CallLogNode(1 << 20) { DetectZeroes = DetectZeroes.On };

        await node.WriteAsync(0, Zeroes, WriteFlags.Fua);

        Assert.Equal(["zero 0+8192 None", "flush"], node.Calls);
    }

    [Fact]
    public async Task ADriverWithoutWriteZeroesGetsTheDataWrite()
    {
        var node = new CallLogNode(1 << 20, zeroes: false) { DetectZeroes = DetectZeroes.On };

        await node.WriteAsync(0, Zeroes);

        Assert.Equal(["write 0+8192 None"], node.Calls);
    }

    [Fact]
    public async Task AnUnalignedZeroWriteZeroesExactlyItsRange()
    {
        var node = new MemoryNode("m", 16384, alignment: 4096) { DetectZeroes = DetectZeroes.On };
        new Random(3).NextBytes(node.Data);
        var expected = (byte[])node.Data.Clone();
        Array.Clear(expected, 1000, 9000);

        await node.WriteAsync(1000, new byte[9000]);

        Assert.Equal(expected, node.Data);
    }

    [Fact]
    public async Task UnmapWithoutDiscardUnmapIsRefusedWithQemusWords()
    {
        await using var bed = new DriverTestBed();

        var e = await bed.AddFailsAsync("""{"driver":"null-co","node-name":"n","detect-zeroes":"unmap"}""");

        Assert.Equal("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap", e.Message);
    }

    [Fact]
    public async Task TheOptionReachesTheNode()
    {
        await using var bed = new DriverTestBed();

        var node = await bed.AddAsync("""{"driver":"null-co","node-name":"n","detect-zeroes":"unmap","discard":"unmap"}""");

        Assert.Equal(DetectZeroes.Unmap, node.DetectZeroes);
    }
}
