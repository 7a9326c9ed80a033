using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.Block;

/// <summary>qemu-img's create options parsed by their types and printed in the format's order; creation refused with QEMU's messages.</summary>
public sealed class ImageCreationTests
{
    private static BlockGraph BuiltIn()
    {
        var graph = new BlockGraph();
        BlockDrivers.RegisterBuiltIn(graph);
        return graph;
    }

    private static IImageFileCreator Creator(string format) => ImageCreation.FileCreator(BuiltIn(), format)!;

    [Fact]
    public void OptionsAreTypedByTheFormatsList()
    {
        var options = ImageCreation.ParseOptions(Creator("qcow2"), new Dictionary<string, string>
        {
            ["cluster_size"] = "128K", ["lazy_refcounts"] = "on", ["refcount_bits"] = "8", ["compat"] = "0.10", ["size"] = "1G",
        });
        Assert.Equal(131072L, options["cluster_size"]!.GetValue<long>());
        Assert.True(options["lazy_refcounts"]!.GetValue<bool>());
        Assert.Equal(8L, options["refcount_bits"]!.GetValue<long>());
        Assert.Equal("0.10", options["compat"]!.GetValue<string>());
        Assert.Equal(1L << 30, options["size"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("qcow2", "bogus", "1", "Invalid parameter 'bogus'")]
    [InlineData("raw", "cluster_size", "64K", "Invalid parameter 'cluster_size'")]
    [InlineData("qcow2", "cluster_size", "big", "Parameter 'cluster_size' expects a size")]
    [InlineData("qcow2", "refcount_bits", "x", "Parameter 'refcount_bits' expects a number")]
    [InlineData("qcow2", "extended_l2", "maybe", "Parameter 'extended_l2' expects 'on' or 'off'")]
    public void BadOptionsAreRefused(string format, string key, string value, string message)
    {
        var e = Assert.Throws<BlockException>(() => ImageCreation.ParseOptions(Creator(format), new Dictionary<string, string> { [key] = value }));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void LineShowsDefaultsAndGivenValuesInTheFormatsOrder()
    {
        var qcow2 = Creator("qcow2");
        var given = ImageCreation.ParseOptions(qcow2, new Dictionary<string, string>
        {
            ["size"] = "1M", ["compat"] = "1.1", ["preallocation"] = "metadata", ["lazy_refcounts"] = "yes",
        });
        Assert.Equal(
            "cluster_size=65536 extended_l2=off preallocation=metadata compression_type=zlib size=1048576 compat=1.1 lazy_refcounts=on refcount_bits=16",
            ImageCreation.Describe(qcow2, given));
        Assert.Equal("size=512", ImageCreation.Describe(Creator("raw"), new JsonObject { ["size"] = 512L }));
    }

    [Fact]
    public async Task FormatsWithoutBackingFilesRefuseOne()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => ImageCreation.CreateFileAsync(
            BuiltIn(), "raw", "/nonexistent/x", new JsonObject { ["size"] = 1024L, ["backing_file"] = "b" }).AsTask());
        Assert.Equal("Backing file not supported for file format 'raw'", e.Message);
    }

    [Theory]
    [InlineData("""{"driver": "raw"}""", "Driver does not support blockdev-create")]
    [InlineData("""{"driver": "throttle"}""", "Driver does not support blockdev-create")]
    [InlineData("""{"driver": "raw", "size": 1024}""", "Parameter 'options.size' is unexpected")]
    [InlineData("""{"driver": "nosuch"}""", "Parameter 'driver' does not accept value 'nosuch'")]
    [InlineData("""{"size": 1}""", "Parameter 'options.driver' is missing")]
    public async Task BlockdevCreateNeedsACreator(string json, string message)
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => ImageCreation.CreateAsync(BuiltIn(), (JsonObject)JsonNode.Parse(json)!).AsTask());
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public async Task FileCreationMakesTheFileAndRefusesUnknownOptions()
    {
        var dir = Directory.CreateTempSubdirectory("create-unit-").FullName;
        try
        {
            var path = Path.Combine(dir, "f.raw");
            await ImageCreation.CreateAsync(BuiltIn(), new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 4096L });
            Assert.Equal(4096, new FileInfo(path).Length);

            var e = await Assert.ThrowsAsync<BlockException>(() => ImageCreation.CreateAsync(
                BuiltIn(), new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 1L, ["bogus"] = 1L }).AsTask());
            Assert.Equal("Parameter 'bogus' is unexpected", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LocalNamesAreFilesAndProtocolsClaimTheirs()
    {
        var graph = BuiltIn();
        ExportServer.Nbd.Client.NbdDriver.Register(graph);
        Assert.Equal("file", graph.ProtocolOptions("/images/a.qcow2")["driver"]!.GetValue<string>());
        var nbd = graph.ProtocolOptions("nbd+unix:///disk?socket=/run/s.sock");
        Assert.Equal("nbd", nbd["driver"]!.GetValue<string>());
        Assert.Equal("/run/s.sock", nbd["server"]!["path"]!.GetValue<string>());
        Assert.Equal("disk", nbd["export"]!.GetValue<string>());
        var legacy = graph.ProtocolOptions("nbd:localhost:10810:exportname=e");
        Assert.Equal("10810", legacy["server"]!["port"]!.GetValue<string>());
        Assert.Equal("e", legacy["export"]!.GetValue<string>());
        Assert.Equal("No valid URL specified", Assert.Throws<BlockException>(() => graph.ProtocolOptions("nbd+unix:///disk")).Message);
    }
}
