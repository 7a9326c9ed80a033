using System.Text;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using ExportServer.UnitTests.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Block;

/// <summary>Probing asks the registered formats for scores, QEMU's way; formats without a driver are known by their magic.</summary>
public sealed class FormatProberTests
{
    private static FormatProber BuiltIn()
    {
        var graph = new BlockGraph();
        BlockDrivers.RegisterBuiltIn(graph);
        return graph.Probes;
    }

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
        var head = all.AsSpan(0, Math.Min(all.Length, FormatProber.ProbeLength)).ToArray();
        Assert.Equal(format, BuiltIn().Probe(head, path));
    }

    [Fact]
    public void RecognisesMagicsWithoutImages()
    {
        var probes = BuiltIn();
        var luks = new byte[512];
        new byte[] { 0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 1 }.CopyTo(luks, 0);
        Assert.Equal("luks", probes.Probe(luks));

        // LUKS2 is opened with driver=luks but never probed, as QEMU probes LUKS1 only.
        luks[7] = 2;
        Assert.Equal("raw", probes.Probe(luks));
        Assert.Equal("vmdk", probes.Probe(Encoding.ASCII.GetBytes("# Disk DescriptorFile\nversion=1\n")));
        var bochs = new byte[512];
        Encoding.ASCII.GetBytes("Bochs Virtual HD Image").CopyTo(bochs, 0);
        Encoding.ASCII.GetBytes("Redolog").CopyTo(bochs, 32);
        Encoding.ASCII.GetBytes("Growing").CopyTo(bochs, 48);
        bochs[66] = 2;
        Assert.Equal("bochs", probes.Probe(bochs));
        bochs[66] = 3;
        Assert.Equal("raw", probes.Probe(bochs));
        Assert.Equal("raw", probes.Probe(bochs.AsSpan(0, 100).ToArray()));
        var cloop = Encoding.ASCII.GetBytes("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n").Concat(new byte[400]).ToArray();
        Assert.Equal("cloop", probes.Probe(cloop));
        Assert.Equal("dmg", probes.Probe(new byte[512], "disk.dmg"));
        Assert.Equal("raw", probes.Probe(new byte[512], "disk.img"));
        Assert.Equal("raw", probes.Probe([0x51, 0x46, 0x49]));
    }

    [Theory]
    [InlineData(2, 100)]
    [InlineData(3, 100)]
    [InlineData(1, 0)]
    [InlineData(4, 0)]
    public void Qcow2ScoresItsMagicAndVersionsOnly(uint version, int score)
    {
        var head = new byte[512];
        new byte[] { 0x51, 0x46, 0x49, 0xfb, 0, 0, 0, (byte)version }.CopyTo(head, 0);
        Assert.Equal(score, new Qcow2Driver().Probe(head, null));
        Assert.Equal(0, new Qcow2Driver().Probe(head.AsSpan(0, 7), null));
    }

    [Fact]
    public void HighestScoreWinsAndRawOnlyWhenNothingElseScores()
    {
        var probes = new FormatProber();
        Assert.Equal("raw", probes.Probe(new byte[512]));
        probes.Add(new FixedProbe("weak", 1));
        probes.Add(new FixedProbe("strong", 50));
        probes.Add(new FixedProbe("tie", 50));
        Assert.Equal("strong", probes.Probe(new byte[512]));
    }

    [Fact]
    public void DriverProbeTakesPrecedenceOverMagicOnlyEntryOfItsName()
    {
        var probes = new FormatProber();
        probes.AddMagicOnly(new FixedProbe("vmdk", 100));
        probes.AddMagicOnly(new FixedProbe("vhdx", 60));
        Assert.Equal("vmdk", probes.Probe(new byte[512]));

        // A driver for vmdk that does not recognise the bytes: its magic-only row no longer counts.
        probes.Add(new FixedProbe("vmdk", 0));
        Assert.Equal("vhdx", probes.Probe(new byte[512]));
    }

    [Fact]
    public void RegisteringADriverRegistersItsProbe()
    {
        var graph = new BlockGraph();
        graph.Register(new Qcow2Driver());
        var head = new byte[512];
        new byte[] { 0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3 }.CopyTo(head, 0);
        Assert.Equal("qcow2", graph.Probes.Probe(head));
    }

    private sealed class FixedProbe(string name, int score) : IFormatProbe
    {
        public string Name => name;

        public int Probe(ReadOnlySpan<byte> head, string? fileName) => score;
    }
}
