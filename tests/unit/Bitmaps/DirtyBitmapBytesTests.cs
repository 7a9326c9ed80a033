using ExportServer.Block.Bitmaps;
using Xunit;

namespace ExportServer.UnitTests.Bitmaps;

/// <summary>The bitmap operations behind QMP, NBD and qcow2 persistence: runs, merges, the byte layout and the checksum.</summary>
public sealed class DirtyBitmapBytesTests
{
    [Fact]
    public void ExtentIsTheRunInTheSameStateClippedToTheRequestAndTheLength()
    {
        var b = new DirtyBitmap(10 * 4096 + 100, 4096);
        b.Set(4096, 3 * 4096);
        Assert.Equal((4096L, false), b.Extent(0, 1 << 20));
        Assert.Equal((3 * 4096L - 10, true), b.Extent(4096 + 10, 1 << 20));
        Assert.Equal((4096L, true), b.Extent(4096, 4096));
        Assert.Equal((6 * 4096L + 100, false), b.Extent(4 * 4096, 1 << 20));
    }

    [Fact]
    public void MergeOfAnotherGranularityMarksTheGranulesItsRunsTouch()
    {
        var fine = new DirtyBitmap(1 << 20, 512);
        fine.Set(70_000, 512);
        var coarse = new DirtyBitmap(1 << 20, 65536);
        coarse.Merge(fine);
        Assert.Equal(1, coarse.DirtyGranules);
        Assert.True(coarse.IsDirty(65536));

        var back = new DirtyBitmap(1 << 20, 4096);
        back.Merge(coarse);
        Assert.Equal(16, back.DirtyGranules);
    }

    [Fact]
    public void BytesPutGranuleIAtBitIModEightOfByteIDivEight()
    {
        var b = new DirtyBitmap(100 * 512, 512);
        b.Set(0, 512);
        b.Set(9 * 512, 512);
        var bytes = new byte[16];
        b.ReadBytes(0, bytes);
        Assert.Equal(0x01, bytes[0]);
        Assert.Equal(0x02, bytes[1]);
        Assert.All(bytes[13..], x => Assert.Equal(0, x));

        var copy = new DirtyBitmap(100 * 512, 512);
        var all = Enumerable.Repeat((byte)0xff, 16).ToArray();
        copy.WriteBytes(0, all);
        Assert.Equal(100, copy.DirtyGranules);
        copy.Clear();
        copy.WriteBytes(0, bytes);
        Assert.Equal(2, copy.DirtyGranules);
        Assert.True(copy.IsDirty(9 * 512));
    }

    [Fact]
    public void Sha256HashesWholeWordsAndAtLeastOne()
    {
        // SHA-256 of eight zero bytes: what QEMU answers for an empty bitmap of up to 64 granules.
        const string EightZeroBytes = "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc";
        Assert.Equal(EightZeroBytes, new DirtyBitmap(4096, 512).Sha256());
        Assert.Equal(EightZeroBytes, new DirtyBitmap(0, 512).Sha256());
        var b = new DirtyBitmap(64 * 512, 512);
        b.Set(0, 1);
        Assert.NotEqual(EightZeroBytes, b.Sha256());
    }

    [Fact]
    public void ResizedKeepsBitsBelowTheNewEnd()
    {
        var b = new DirtyBitmap(10 * 4096, 4096);
        b.Set(0, 10 * 4096);
        var smaller = b.Resized(3 * 4096 + 1);
        Assert.Equal(4, smaller.DirtyGranules);
        var larger = smaller.Resized(100 * 4096);
        Assert.Equal(4, larger.DirtyGranules);
        Assert.False(larger.IsDirty(50 * 4096));
    }
}
