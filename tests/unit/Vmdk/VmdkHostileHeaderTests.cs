using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;
using ExportServer.UnitTests.Drivers;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Vmdk;

/// <summary>
/// Damaged or hostile vmdk headers and descriptors are refused at open with an error naming the
/// field, before anything they describe is read or allocated; a grain pointing past the file fails
/// the read, not the process.
/// </summary>
public sealed class VmdkHostileHeaderTests
{
    // A 64 MiB monolithicSparse image as qemu-img makes it: redundant directory at sector 21, its
    // two tables at 22..29, the directory at sector 30 naming tables at 31 and 35; grains from sector 128.
    private const int DirectoryOffset = 30 * 512;
    private const int FirstTableOffset = 31 * 512;

    private static byte[] Fresh(DriverTestBed bed)
    {
        var path = bed.PathOf("fresh.vmdk");
        Ok("qemu-img", "create", "-f", "vmdk", path, "64M");
        Ok("qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 0 128k", path);
        return File.ReadAllBytes(path);
    }

    private static string Open(string path) =>
        "{\"driver\": \"vmdk\", \"read-only\": true, \"file\": {\"driver\": \"file\", \"filename\": " + DriverTestBed.Json(path) + "}}";

    private static async Task<BlockException> OpenFailsAsync(DriverTestBed bed, byte[] image, string name = "img.vmdk")
    {
        var path = bed.PathOf(name);
        await File.WriteAllBytesAsync(path, image);
        return await bed.AddFailsAsync(Open(path));
    }

    [Theory]
    [InlineData(4, 4, 4L, "Unsupported VMDK version 4")]
    [InlineData(44, 4, 0x100000L, "num_gtes_per_gt")]
    [InlineData(44, 4, 0L, "L1 entry size is invalid")]
    [InlineData(20, 8, 0x400000L, "granularity")]
    [InlineData(12, 8, 1L << 46, "L1 size too big")]
    [InlineData(56, 8, 0x100000L, "grain directory of")]
    [InlineData(56, 8, 0x7fffffffffffffffL, "gd_offset")]
    [InlineData(48, 8, 0x100000L, "redundant grain directory")]
    [InlineData(64, 8, 0x100000L, "grain_offset")]
    [InlineData(DirectoryOffset, 4, 0x7fffffffL, "grain directory entry 0")]
    [InlineData(DirectoryOffset + 4, 4, 31L, "overlapping grain tables")]
    [InlineData(DirectoryOffset + 4, 4, 32L, "overlapping grain tables")]
    public async Task BadHeaderFieldIsNamed(int offset, int width, long value, string field)
    {
        await using var bed = new DriverTestBed();
        var image = Fresh(bed);
        if (width == 8)
        {
            BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(offset), value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(offset), (uint)value);
        }

        var e = await OpenFailsAsync(bed, image);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public async Task GrainBeyondTheFileFailsTheReadOnly()
    {
        await using var bed = new DriverTestBed();
        var image = Fresh(bed);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(FirstTableOffset + 4), 0x100000);
        var path = bed.PathOf("img.vmdk");
        await File.WriteAllBytesAsync(path, image);
        var node = await bed.AddAsync(Open(path));
        var buffer = new byte[65536];
        await node.ReadAsync(0, buffer);
        Assert.All(buffer, b => Assert.Equal(0x5a, b));
        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(65536, buffer).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Contains("beyond the end of the file", e.Message);
    }

    [Fact]
    public async Task DescriptorOffsetBeyondTheFileIsNamed()
    {
        await using var bed = new DriverTestBed();
        var image = Fresh(bed);
        BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(12), 0);
        BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(28), 0x1000000);
        var e = await OpenFailsAsync(bed, image);
        Assert.Contains("desc_offset", e.Message);
    }

    [Fact]
    public async Task DescriptorThatNamesItselfAsAnExtentIsRefused()
    {
        // A sparse header with no capacity whose embedded descriptor lists the file itself.
        await using var bed = new DriverTestBed();
        var image = new byte[4096];
        BinaryPrimitives.WriteUInt32BigEndian(image, 0x4b444d56);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(4), 1);
        BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(28), 1);
        BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(36), 7);
        Encoding.ASCII.GetBytes("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\nRW 8 SPARSE \"loop.vmdk\"\n")
            .CopyTo(image, 512);
        var e = await OpenFailsAsync(bed, image, "loop.vmdk");
        Assert.Contains("is itself a descriptor", e.Message);
    }

    [Theory]
    [InlineData("hello\nworld\n", "invalid VMDK image descriptor")]
    [InlineData("version=1\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"x.vmdk\"\n", "Unsupported image type 'monolithicSparse'")]
    [InlineData("version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"data.raw\"\n", "Invalid extent line: RW 8 FLAT \"data.raw\"")]
    [InlineData("version=1\ncreateType=\"monolithicFlat\"\nRW 8 VMFS \"data.raw\" 3\n", "Invalid extent line")]
    [InlineData("version=1\ncreateType=\"monolithicFlat\"\nRW 4096 FLAT \"data.raw\" 0\n", "reaches beyond the end of its file")]
    [InlineData("version=1\ncreateType=\"monolithicFlat\"\nRDONLY 8 FLAT \"data.raw\" 0\n", "names no extent")]
    [InlineData("version=1\ncreateType=\"twoGbMaxExtentSparse\"\nRW 8 SPARSE \"data.raw\"\n", "Image not in VMDK format")]
    [InlineData("version=1\nCID=xyz\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"data.raw\" 0\n", "invalid CID 'xyz'")]
    public async Task BadDescriptorIsRefused(string descriptor, string message)
    {
        await using var bed = new DriverTestBed();
        bed.CreateFile("data.raw", 65536);
        var e = await OpenFailsAsync(bed, Encoding.ASCII.GetBytes(descriptor), "desc.vmdk");
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public async Task StreamWithADamagedFooterIsRefused()
    {
        await using var bed = new DriverTestBed();
        var image = Fresh(bed);
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(56), ulong.MaxValue);
        var e = await OpenFailsAsync(bed, image);
        Assert.Contains("Invalid footer", e.Message);
    }
}
