using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Bitmaps;

/// <summary>The common I/O path marks a node's enabled bitmaps for writes, zero-writes and (with discard=unmap) discards.</summary>
public sealed class BitmapTrackingTests
{
    [Fact]
    public async Task WritesAndZeroWritesMarkTheGranulesTheyTouch()
    {
        await using var node = new MemoryNode("m", 1 << 20);
        var b = node.CreateDirtyBitmap("b0", 65536);
        await node.WriteAsync(100, new byte[10]);
        await node.WriteZeroesAsync(3 * 65536 - 1, 2);
        Assert.Equal(3, b.Bits.DirtyGranules);
        Assert.True(b.Bits.IsDirty(0));
        Assert.True(b.Bits.IsDirty(2 * 65536));
        Assert.True(b.Bits.IsDirty(3 * 65536));
        Assert.Equal(3 * 65536, b.Count);
    }

    [Fact]
    public async Task DisabledBitmapsDoNotRecord()
    {
        await using var node = new MemoryNode("m", 1 << 20);
        var on = node.CreateDirtyBitmap("on", 4096);
        var off = node.CreateDirtyBitmap("off", 4096);
        off.Enabled = false;
        await node.WriteAsync(8192, new byte[4096]);
        Assert.Equal(1, on.Bits.DirtyGranules);
        Assert.True(off.Bits.IsEmpty);
        Assert.Equal(["off", "on"], node.DirtyBitmaps.Select(x => x.Name));
    }

    [Fact]
    public async Task DiscardMarksTheWholeRangeOnlyWhenTheNodeUnmaps()
    {
        await using var node = new MemoryNode("m", 1 << 20);
        var b = node.CreateDirtyBitmap("b0", 4096);
        await node.DiscardAsync(0, 3 * 4096);
        Assert.True(b.Bits.IsEmpty);
        node.DiscardUnmap = true;
        await node.DiscardAsync(100, 200);
        await node.DiscardAsync(5 * 4096, 2 * 4096);
        Assert.Equal(3, b.Bits.DirtyGranules);
    }

    [Fact]
    public void NamesAreUniqueAndBounded()
    {
        var node = new MemoryNode("m", 1 << 20);
        node.CreateDirtyBitmap("b0", 4096);
        Assert.Equal("Bitmap already exists: b0", Assert.Throws<BlockException>(() => node.CreateDirtyBitmap("b0", 4096)).Message);
        var longName = new string('x', 1024);
        Assert.Equal($"Bitmap name too long: {longName}", Assert.Throws<BlockException>(() => node.CreateDirtyBitmap(longName, 4096)).Message);
    }

    [Fact]
    public void ChecksRefuseBusyReadOnlyAndInconsistentBitmapsInQemuWords()
    {
        var node = new MemoryNode("m", 1 << 20);
        var b = node.CreateDirtyBitmap("b0", 4096);
        b.Busy = true;
        Assert.Equal("Bitmap 'b0' is currently in use by another operation and cannot be used",
            Assert.Throws<BlockException>(() => b.Check(BitmapChecks.Default)).Message);
        b.Busy = false;
        b.ReadOnly = true;
        Assert.Equal("Bitmap 'b0' is readonly and cannot be modified", Assert.Throws<BlockException>(() => b.Check(BitmapChecks.Default)).Message);
        b.Check(BitmapChecks.AllowReadOnly);
        b.SetInconsistent();
        Assert.False(b.Enabled);
        Assert.Equal("Bitmap 'b0' is inconsistent and cannot be used", Assert.Throws<BlockException>(() => b.Check(BitmapChecks.AllowReadOnly)).Message);
    }
}
