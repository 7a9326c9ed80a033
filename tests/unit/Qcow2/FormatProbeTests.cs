using System.Text;
using ExportServer.Block.Formats.Probe;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

public sealed class FormatProbeTests
{
    [Theory]
    [InlineData("qcow2")]
    [InlineData("qcow")]
    [InlineData("vmdk")]
    [InlineData("vhdx")]
    [InlineData("vpc")]
    [InlineData("vdi")]
    [InlineData("qed")]
    [InlineData("parallels")]
    [InlineData("raw")]
    public void RecognisesImagesMadeByQemuImg(string format)
    {
        using var dir = new TempDir();
        var path = dir["img." + format];
        Ok("qemu-img", "create", "-f", format, path, "4M");
        var all = File.ReadAllBytes(path);
        var head = all.AsSpan(0, Math.Min(all.Length, FormatProbe.ProbeLength)).ToArray();
        Assert.Equal(format, FormatProbe.Probe(head, path));
    }

    [Fact]
    public void RecognisesMagicsWithoutImages()
    {
        var luks = new byte[512];
        new byte[] { 0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 1 }.CopyTo(luks, 0);
        Assert.Equal("luks", FormatProbe.Probe(luks));
        Assert.Equal("vmdk", FormatProbe.Probe(Encoding.ASCII.GetBytes("# Disk DescriptorFile\nversion=1\n")));
        Assert.Equal("dmg", FormatProbe.Probe(new byte[512], "disk.dmg"));
        Assert.Equal("raw", FormatProbe.Probe(new byte[512], "disk.img"));
        Assert.Equal("raw", FormatProbe.Probe([0x51, 0x46, 0x49]));
    }
}
