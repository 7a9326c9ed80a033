using ExportServer.Block.Core;
using ExportServer.UnitTests.Drivers;
using Xunit;
using static ExportServer.TestFixtures.SeSparseFixture;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Vmdk;

/// <summary>
/// Writes into seSparse extents built byte by byte: new grains and tables laid out as the format
/// lays them out, read back by qemu-img and by a reopen; zero and unmapped entries for zeroes and
/// discards; nothing named on disk before the data under it; full areas and unsafe layouts refused.
/// </summary>
public sealed class SeSparseWriteTests
{
    private const long Capacity = 64L << 20;

    private static string Open(string path, bool readOnly = false, bool autoReadOnly = false, string discard = "ignore") =>
        $"{{\"driver\": \"vmdk\", \"read-only\": {(readOnly ? "true" : "false")}, \"auto-read-only\": {(autoReadOnly ? "true" : "false")}, " +
        $"\"discard\": \"{discard}\", \"file\": {{\"driver\": \"file\", \"filename\": {DriverTestBed.Json(path)}}}}}";

    /// <summary>A populated seSparse extent (over a 64 MiB parent of 0x99 when <paramref name="withParent"/>); returns its descriptor.</summary>
    private static async Task<(string Descriptor, string Extent, Layout Layout)> MakeAsync(DriverTestBed bed, bool withParent, bool populated = true, int? tableSlots = null, long? grainSlots = null)
    {
        string? hint = null, cid = "ffffffff";
        if (withParent)
        {
            var parent = bed.PathOf("base.vmdk");
            Ok("qemu-img", "create", "-f", "vmdk", parent, "64M");
            Ok("qemu-io", "-f", "vmdk", "-c", "write -P 0x99 0 64M", parent);
            (hint, cid) = ("base.vmdk", VmdkHandBuiltImageTests.Cid(parent));
        }

        var extent = bed.PathOf("d-sesparse.vmdk");
        var layout = Build(extent, Capacity, populated, tableSlots, grainSlots);
        var descriptor = bed.PathOf("d.vmdk");
        await File.WriteAllTextAsync(descriptor, Descriptor(Capacity, "d-sesparse.vmdk", hint, cid));
        return (descriptor, extent, layout);
    }

    private static async Task WriteAsync(BlockNode node, byte[] expected, long offset, int length, byte pattern)
    {
        var data = Enumerable.Repeat(pattern, length).ToArray();
        await node.WriteAsync(offset, data);
        data.CopyTo(expected, offset);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WritesReadBackInQemuImgAndAfterReopen(bool withParent)
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent);
        var expected = ConvertToRaw(descriptor, bed.Directory);
        var node = await bed.AddAsync(Open(descriptor));

        await WriteAsync(node, expected, 100, 200, 0xa1);                         // in place, grain 5000
        await WriteAsync(node, expected, 4096 + 1000, 512, 0xa2);                 // over a zero grain
        await WriteAsync(node, expected, 8192, 4096, 0xa3);                       // over an unmapped grain
        await WriteAsync(node, expected, 16384 + 7, 100, 0xa4);                   // unallocated grain: parent around it
        await WriteAsync(node, expected, (32L << 20) + 5000, 10000, 0xa5);        // the unallocated table
        await WriteAsync(node, expected, (48L << 20) - 2048, 4096, 0xa6);         // across two tables
        await node.FlushAsync();
        await bed.Graph.CloseAllAsync();

        Assert.True(expected.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "qemu-img reads other data than was written");
        var check = Check(descriptor);
        Assert.True(check.Code == 0, check.Output);
        var reopened = await VmdkHandBuiltImageTests.ReadAllAsync(await bed.AddAsync(Open(descriptor, readOnly: true)));
        Assert.True(expected.AsSpan().SequenceEqual(reopened), "a reopen reads other data than was written");

        // Tables 0-2 were in use with free_gt_number 0: the new table is number 3, counted in the volatile header.
        Assert.Equal(0x1000000000000003UL, Get64(extent, layout.Directory + 16));
        Assert.Equal(4UL, Get64(extent, 512 + 8));

        // New grains follow the last one the file held (5000), in write order.
        Assert.Equal(Allocated(5001), Get64(extent, layout.Table(2, 1)));
        Assert.Equal(Allocated(5002), Get64(extent, layout.Table(2, 2)));
        Assert.Equal(Allocated(5004), Get64(extent, layout.Table(3, 1)));
        Assert.Equal(Allocated(5000), Get64(extent, layout.Table(2, 0)));
    }

    [Fact]
    public async Task AnEmptyExtentFillsItsAreasFromTheStart()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: false, populated: false);
        var expected = new byte[Capacity];
        var node = await bed.AddAsync(Open(descriptor));
        await WriteAsync(node, expected, 40L << 20, 8192, 0x31);
        await WriteAsync(node, expected, 3, 5, 0x32);
        await bed.Graph.CloseAllAsync();

        Assert.True(expected.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "qemu-img reads other data than was written");
        Assert.Equal(0x1000000000000000UL, Get64(extent, layout.Directory + 16));
        Assert.Equal(0x1000000000000001UL, Get64(extent, layout.Directory));
        Assert.Equal(Allocated(0), Get64(extent, layout.Table(0, (int)((40L << 20) % TableSpan / GrainBytes))));
        Assert.Equal(Allocated(2), Get64(extent, layout.Table(1, 0)));
        Assert.Equal(2UL, Get64(extent, 512 + 8));
        Assert.Equal(layout.Grain(3), new FileInfo(extent).Length);
    }

    [Fact]
    public async Task ZeroesAndDiscardsUseTheZeroAndUnmappedKinds()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: true);
        var expected = ConvertToRaw(descriptor, bed.Directory);
        var node = await bed.AddAsync(Open(descriptor, discard: "unmap"));

        await node.WriteZeroesAsync(0, 4096);                                     // allocated grain 5000
        await node.WriteZeroesAsync(16384, 8192, ZeroFlags.MayUnmap);             // unallocated over the parent
        await node.DiscardAsync(16L << 20, 4096);                                 // allocated grain 7
        await node.WriteZeroesAsync(12288 + 100, 50);                             // part of grain 1: written
        await node.DiscardAsync((64L << 20) - 4096, 4096);                        // grain 4096
        Array.Clear(expected, 0, 4096);
        Array.Clear(expected, 16384, 8192);
        Array.Clear(expected, 16 << 20, 4096);
        Array.Clear(expected, 12288 + 100, 50);
        Array.Clear(expected, (64 << 20) - 4096, 4096);
        await bed.Graph.CloseAllAsync();

        Assert.True(expected.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "qemu-img reads other data than was written");
        Assert.Equal(0x2000000000000000UL, Get64(extent, layout.Table(2, 0)));
        Assert.Equal(0x1000000000000000UL, Get64(extent, layout.Table(2, 4)));
        Assert.Equal(0x1000000000000000UL, Get64(extent, layout.Table(2, 5)));
        Assert.Equal(0x1000000000000000UL, Get64(extent, layout.Table(0, 0)));
        Assert.Equal(0x1000000000000000UL, Get64(extent, layout.Table(1, 4095)));
        Assert.Equal(Allocated(1), Get64(extent, layout.Table(2, 3)));
    }

    [Fact]
    public async Task NothingIsNamedOnDiskBeforeTheFlushAfterItsData()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: true);
        var before = ConvertToRaw(descriptor, bed.Directory);
        var node = await bed.AddAsync(Open(descriptor));
        var after = before.ToArray();
        await WriteAsync(node, after, (32L << 20) + 4096, 4096, 0x5e);
        await WriteAsync(node, after, 20000, 3000, 0x5f);

        // Data written, tables and directory untouched: what a kill now leaves reads the old data.
        Assert.Equal(0UL, Get64(extent, layout.Directory + 16));
        Assert.Equal(0UL, Get64(extent, 512 + 8));
        Assert.Equal(0UL, Get64(extent, layout.Table(2, 4)));
        Assert.True(before.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "unflushed allocations are visible on disk");

        await node.FlushAsync();
        Assert.True(after.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "flushed writes are not on disk");
        await bed.Graph.CloseAllAsync();
    }

    [Theory]
    [InlineData(1, 1000L, 16L << 20, "the grain tables area of the seSparse extent")]
    [InlineData(4, 2L, 20L << 20, "the grains area of the seSparse extent")]
    public async Task AFullAreaRefusesTheWriteAndTheNodeStaysUsable(int tableSlots, long grainSlots, long offset, string message)
    {
        await using var bed = new DriverTestBed();
        var (descriptor, _, _) = await MakeAsync(bed, withParent: false, populated: false, tableSlots, grainSlots);
        var node = await bed.AddAsync(Open(descriptor));
        await node.WriteAsync(0, new byte[8192].Select(_ => (byte)0x42).ToArray());
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.WriteAsync(offset, new byte[4096]));
        Assert.Contains(message, e.Message);
        Assert.Contains("is full", e.Message);
        await node.FlushAsync();
        var back = new byte[8192];
        await node.ReadAsync(0, back);
        Assert.All(back, b => Assert.Equal(0x42, b));
        await bed.Graph.CloseAllAsync();
        Assert.True(Check(descriptor).Code == 0);
    }

    [Fact]
    public async Task OverlappingAreasAreRefusedWritableAndOpenReadOnlyWithAutoReadOnly()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: false);
        using (var f = new FileStream(extent, FileMode.Open))
        {
            Put64(f, 192, (ulong)((layout.Tables / Sector) + 64));                // grains_offset inside the tables area
        }

        var e = await bed.AddFailsAsync(Open(descriptor));
        Assert.Contains("its grain tables area overlaps its grains area", e.Message);
        var node = await bed.AddAsync(Open(descriptor, autoReadOnly: true));
        Assert.True(node.IsReadOnly);
    }

    [Fact]
    public async Task ATableOutsideItsAreaIsRefusedWritable()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: false);
        using (var f = new FileStream(extent, FileMode.Open))
        {
            Put64(f, layout.Directory + 16, 0x1000000000000004);                  // the grain tables area holds 4
        }

        var e = await bed.AddFailsAsync(Open(descriptor));
        Assert.Contains("grain directory entry 2 names a table outside the grain tables area", e.Message);
        await bed.AddAsync(Open(descriptor, readOnly: true));
    }

    [Fact]
    public async Task AGrainOutsideItsAreaIsNotWrittenInPlace()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, layout) = await MakeAsync(bed, withParent: false, grainSlots: 4097);
        var bytes = await File.ReadAllBytesAsync(extent);
        var node = await bed.AddAsync(Open(descriptor));
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.WriteAsync(0, new byte[512]));
        Assert.Contains("names grain 5000 outside the grains area (4097 grains)", e.Message);
        await node.WriteAsync((64L << 20) - 4096, new byte[4096]);               // grain 4096, inside
        var back = new byte[4096];
        await node.ReadAsync(0, back);
        Assert.All(back, b => Assert.Equal(Pattern(5000), b));
        await bed.Graph.CloseAllAsync();
        Array.Clear(bytes, (int)layout.Grain(4096), 4096);
        var now = await File.ReadAllBytesAsync(extent);
        Assert.True(bytes.AsSpan().SequenceEqual(now), "the extent changed elsewhere than in grain 4096");
    }

    [Fact]
    public async Task AReadOnlyNodeRefusesWrites()
    {
        await using var bed = new DriverTestBed();
        var (descriptor, extent, _) = await MakeAsync(bed, withParent: false);
        var bytes = await File.ReadAllBytesAsync(extent);
        var node = await bed.AddAsync(Open(descriptor, readOnly: true));
        var e = await Assert.ThrowsAsync<BlockException>(async () => await node.WriteAsync(0, new byte[512]));
        Assert.Contains("is read-only", e.Message);
        await Assert.ThrowsAsync<BlockException>(async () => await node.WriteZeroesAsync(0, 4096));
        await bed.Graph.CloseAllAsync();
        var now = await File.ReadAllBytesAsync(extent);
        Assert.True(bytes.AsSpan().SequenceEqual(now), "a read-only node changed its extent");
    }
}
