using System.Buffers.Binary;
using ExportServer.UnitTests.Drivers;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Vmdk;

/// <summary>Writes where the image has no grain table yet, and into ESX sparse (COWD) extents, read back by qemu-img.</summary>
public sealed class VmdkWriteTests
{
    private static string Open(string path) =>
        "{\"driver\": \"vmdk\", \"file\": {\"driver\": \"file\", \"filename\": " + DriverTestBed.Json(path) + "}}";

    [Fact]
    public async Task WriteWhereNoGrainTableExistsAllocatesOneInBothDirectories()
    {
        // A 64 MiB image as qemu-img makes it, with the second grain table unlinked from both directories.
        await using var bed = new DriverTestBed();
        var path = bed.PathOf("img.vmdk");
        Ok("qemu-img", "create", "-f", "vmdk", path, "64M");
        Ok("qemu-io", "-f", "vmdk", "-c", "write -P 0x17 0 64K", path);
        var image = await File.ReadAllBytesAsync(path);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((30 * 512) + 4), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((21 * 512) + 4), 0);
        await File.WriteAllBytesAsync(path, image);

        var node = await bed.AddAsync(Open(path));
        await node.WriteAsync(40 << 20, Enumerable.Repeat((byte)0x5c, 100000).ToArray());
        await node.FlushAsync();
        await bed.Graph.CloseAllAsync();

        Assert.Contains("No errors were found", Check(path).Output);
        Ok("qemu-io", "-f", "vmdk", "-r", "-c", "read -P 0x5c 40M 100000", "-c", "read -P 0x17 0 64K", "-c", "read -P 0 32M 8M", path);
        image = await File.ReadAllBytesAsync(path);
        var primary = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan((30 * 512) + 4));
        var redundant = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan((21 * 512) + 4));
        Assert.True(primary > 128 && redundant > 128 && primary != redundant, $"tables at sectors {primary} and {redundant}");
    }

    [Fact]
    public async Task CowdExtentTakesWritesQemuImgReads()
    {
        await using var bed = new DriverTestBed();
        VmdkHandBuiltImageTests.BuildCowd(bed.PathOf("cowd.vmdk"));
        var descriptor = bed.PathOf("d.vmdk");
        await File.WriteAllTextAsync(descriptor, "version=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfsSparse\"\n# Extent description\nRW 16384 VMFSSPARSE \"cowd.vmdk\"\n");
        var expected = ConvertToRaw(descriptor, bed.Directory);
        var node = await bed.AddAsync(Open(descriptor));
        var data = Enumerable.Repeat((byte)0x6d, 70000).ToArray();
        await node.WriteAsync(5000, data);
        await node.WriteAsync(7 << 20, data);
        data.CopyTo(expected, 5000);
        data.CopyTo(expected, 7 << 20);
        await bed.Graph.CloseAllAsync();
        Assert.True(expected.AsSpan().SequenceEqual(ConvertToRaw(descriptor, bed.Directory)), "qemu-img reads other data than was written");
    }
}
