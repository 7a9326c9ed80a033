using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Vhdx;
using ExportServer.UnitTests.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Vhdx;

/// <summary>
/// VHDX images made in memory by our creator (64 MiB, 1 MiB blocks: log at 1 MiB, BAT at 2 MiB,
/// metadata at 3 MiB, data from 8 MiB): the log replayed from the moment a crash would leave, and
/// hostile headers refused naming the field.
/// </summary>
public sealed class VhdxImageTests
{
    private const int Regions = 192 * 1024;
    private const int Bat = 2 << 20;
    private const int Metadata = 3 << 20;

    private static async Task<InMemoryFileNode> CreateAsync(bool blockStateZero = true)
    {
        var file = new InMemoryFileNode("f", "/tmp/img.vhdx", [], readOnly: false);
        await VhdxCreator.CreateAsync(file, new VhdxCreateOptions { Size = 64 << 20, BlockSize = 1 << 20, BlockStateZero = blockStateZero });
        return file;
    }

    private static InMemoryFileNode FileOf(byte[] image, bool readOnly = true) => new("f", "/tmp/img.vhdx", image, readOnly);

    private static async Task<string> OpenErrorAsync(byte[] image) =>
        (await Assert.ThrowsAsync<BlockException>(async () => await VhdxNode.OpenAsync("v", true, FileOf(image)))).Message;

    private static void Reseal(byte[] image, int at, int length) =>
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(at + 4), VhdxFormat.Checksum(image.AsSpan(at, length), 4));

    /// <summary>
    /// The file as it is after an allocating write has put the BAT change in the log but not yet in
    /// its place: opened here read-only (in memory) or writable (into the file), and by qemu-img,
    /// the new data reads back.
    /// </summary>
    [Fact]
    public async Task LogEntryBeforeTheBatReachesItsPlaceIsReplayedHereAndByQemu()
    {
        var file = await CreateAsync();
        var node = await VhdxNode.OpenAsync("v", false, file);
        byte[]? beforeLastWrite = null;
        file.BeforeWrite = f => beforeLastWrite = f.Snapshot();
        await node.WriteAsync(5 << 20, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        file.BeforeWrite = null;
        var crashed = beforeLastWrite!;
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(crashed.AsSpan(Bat + (5 * 8))) & 7); // still ZERO in place

        var back = new byte[4096];
        await (await VhdxNode.OpenAsync("v", true, FileOf((byte[])crashed.Clone()))).ReadAsync(5 << 20, back);
        Assert.All(back, b => Assert.Equal(0x5a, b));

        var replayed = FileOf((byte[])crashed.Clone(), readOnly: false);
        await (await VhdxNode.OpenAsync("v", false, replayed)).DisposeAsync();
        Assert.Equal(6u, BinaryPrimitives.ReadUInt32LittleEndian(replayed.Snapshot().AsSpan(Bat + (5 * 8))) & 7);

        using var dir = new TempDir();
        var path = dir["crashed.vhdx"];
        await File.WriteAllBytesAsync(path, crashed);
        Assert.Contains("needs to be replayed", Run("qemu-img", "info", "-f", "vhdx", path).Output);
        Ok("qemu-img", "check", "-r", "all", "-f", "vhdx", path);
        Ok("qemu-io", "-f", "vhdx", "-c", "read -P 0x5a 5M 4k", path);
    }

    [Fact]
    public async Task OneValidHeaderIsEnoughAndNoneIsRefused()
    {
        var image = (await CreateAsync()).Snapshot();
        image[(64 * 1024) + 100] ^= 1;
        Assert.Equal(64L << 20, (await VhdxNode.OpenAsync("v", true, FileOf((byte[])image.Clone()))).Length);
        image[(128 * 1024) + 100] ^= 1;
        Assert.StartsWith("No valid VHDX header found", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task RegionTableIsChecked()
    {
        var image = (await CreateAsync()).Snapshot();
        var bad = (byte[])image.Clone();
        bad[Regions + 40] ^= 1;
        Assert.StartsWith("vhdx: region table checksum", await OpenErrorAsync(bad));

        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Regions + 16 + 16), 1UL << 40);
        Reseal(image, Regions, 64 * 1024);
        Assert.Equal("vhdx: BAT region (offset 0x10000000000, length 1048576) is not inside the file past its header section", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task MetadataIsChecked()
    {
        var image = (await CreateAsync()).Snapshot();
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(Metadata + (64 * 1024)), 3 << 20);
        Assert.Equal("vhdx: block size 3145728 (file parameters) is not a power of two from 1 MiB to 256 MiB", await OpenErrorAsync(image));
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(Metadata + 10), 4000);
        Assert.Equal("vhdx: metadata table entry count 4000 is above the maximum of 2047", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task BatEntriesBeyondTheFileOrOverTheMetadataAreRefused()
    {
        var image = (await CreateAsync()).Snapshot();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Bat), (1UL << 40) | 6);
        Assert.StartsWith("VHDX BAT entry 0 start offset 1099511627776 points after end of file", await OpenErrorAsync(image));
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Bat), Metadata | 6);
        Assert.Equal("vhdx: BAT entry 0 (block at offset 0x300000) overlaps the metadata region", await OpenErrorAsync(image));
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Bat), 4);
        Assert.StartsWith("vhdx: BAT entry 0 has state 4", await OpenErrorAsync(image));
    }

    [Fact]
    public async Task CorruptLogIsRefused()
    {
        var file = await CreateAsync();
        var node = await VhdxNode.OpenAsync("v", false, file);
        await node.WriteAsync(0, new byte[4096]);
        var image = file.Snapshot();

        // A log entry whose tail points at nothing: the sequence cannot be followed.
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((1 << 20) + 12), 8192 * 4);
        Reseal(image, 1 << 20, 8192);
        Assert.StartsWith("vhdx: log is corrupt", await OpenErrorAsync(image));
    }

    /// <summary>Our 64 MiB image (blocks NOT_PRESENT) with the has-parent bit set: a differencing image without a parent attached (NOT_PRESENT reads as zeroes).</summary>
    private static async Task<InMemoryFileNode> CreateDifferencingAsync()
    {
        var file = await CreateAsync(blockStateZero: false);
        var image = file.Snapshot();
        image[Metadata + (64 * 1024) + 4] |= 2;
        return FileOf(image, readOnly: false);
    }

    /// <summary>
    /// A write into a NOT_PRESENT block of a differencing image, stopped after its log entry and
    /// before any (or all) of its three sectors (sector bitmap, BAT sector of the block, BAT sector of
    /// the bitmap entry) reach their place: the one log entry replays all three, so the sectors
    /// written read back and their neighbours still show the parent (zeroes here).
    /// </summary>
    [Fact]
    public async Task PartialBlockAllocationIsOneLogEntry()
    {
        var file = await CreateDifferencingAsync();
        var node = await VhdxNode.OpenAsync("v", false, file);
        var snapshots = new List<byte[]>();
        file.BeforeWrite = f => snapshots.Add(f.Snapshot());
        await node.WriteAsync((5 << 20) + 4096, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        file.BeforeWrite = null;
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(snapshots[^3].AsSpan(Bat + (5 * 8))) & 7);
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32LittleEndian(snapshots[^1].AsSpan(Bat + (5 * 8))) & 7);

        foreach (var crashed in new[] { snapshots[^3], snapshots[^1] })
        {
            foreach (var readOnly in new[] { true, false })
            {
                var reopened = await VhdxNode.OpenAsync("v", readOnly, FileOf((byte[])crashed.Clone(), readOnly));
                var back = new byte[3 * 4096];
                await reopened.ReadAsync(5 << 20, back);
                Assert.All(back[..4096], b => Assert.Equal(0, b));
                Assert.All(back[4096..8192], b => Assert.Equal(0x5a, b));
                Assert.All(back[8192..], b => Assert.Equal(0, b));
                var status = await reopened.GetBlockStatusAsync((5 << 20) + 4096, 1 << 20);
                Assert.Equal(4096, status.Length);
                await reopened.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task PartiallyPresentBlockNeedsItsSectorBitmap()
    {
        var image = (await CreateDifferencingAsync()).Snapshot();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Bat), (5UL << 20) | 7);
        Assert.Equal("vhdx: BAT entry 0 is partially present but the sector bitmap entry 4096 of its chunk is not present", await OpenErrorAsync(image));
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Bat + (4096 * 8)), (1UL << 40) | 6);
        Assert.StartsWith("VHDX BAT entry 4096 start offset 1099511627776 points after end of file", await OpenErrorAsync(image));
    }
}
