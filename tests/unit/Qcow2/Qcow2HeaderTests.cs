using System.Buffers.Binary;
using ExportServer.Block.Formats.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

public sealed class Qcow2HeaderTests
{
    [Fact]
    public void RoundTripKeepsEveryExtensionInOrderAndUnknownOnesVerbatim()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", dir["b.qcow2"], "1M");
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "compression_type=zstd,data_file=" + dir["d.bin"], "-b", "b.qcow2", "-F", "qcow2", dir["a.qcow2"], "1M");
        var bytes = File.ReadAllBytes(dir["a.qcow2"]);
        var h = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "a");
        Assert.Equal("qcow2", h.BackingFormat);
        Assert.Equal("b.qcow2", h.BackingFile);
        Assert.Equal(dir["d.bin"], h.DataFile);
        Assert.Equal(Qcow2Format.CompressionZstd, h.CompressionType);
        Assert.Equal("external data file", h.FeatureName(0, 2));

        h.Extensions.Add(new Qcow2HeaderExtension(0x12345678, [1, 2, 3, 4, 5]));
        var written = new byte[65536];
        h.Write(written);
        var again = Qcow2Header.Read(written, bytes.Length, "a");
        Assert.Equal(h.Extensions.Select(e => (e.Type, Convert.ToHexString(e.Data))), again.Extensions.Select(e => (e.Type, Convert.ToHexString(e.Data))));
        Assert.Equal(h.BackingFile, again.BackingFile);
        Assert.Equal(h.L1TableOffset, again.L1TableOffset);
        Assert.Equal(h.IncompatibleFeatures, again.IncompatibleFeatures);

        // Without the added extension the bytes are what qemu-img wrote.
        h.Extensions.RemoveAt(h.Extensions.Count - 1);
        h.Write(written);
        Assert.Equal(bytes.AsSpan(0, 4096).ToArray(), written.AsSpan(0, 4096).ToArray());
    }

    [Fact]
    public void VersionTwoHeaderHasNoFeatureFields()
    {
        using var dir = new TempDir();
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", dir["v2.qcow2"], "1M");
        var bytes = File.ReadAllBytes(dir["v2.qcow2"]);
        var h = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "v2");
        Assert.Equal(2, h.Version);
        Assert.Equal(4, h.RefcountOrder);
        var written = new byte[65536];
        h.Write(written);
        Assert.Equal(bytes.AsSpan(0, 512).ToArray(), written.AsSpan(0, 512).ToArray());
    }
}
