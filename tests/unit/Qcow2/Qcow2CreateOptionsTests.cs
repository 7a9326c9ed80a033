using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Formats.Qcow2;
using Xunit;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// One options record binds blockdev-create's names; qemu-img's names reach it renamed, so both ways
/// make the same image. What the image says of itself is what queries show as 'format-specific'.
/// </summary>
public sealed class Qcow2CreateOptionsTests
{
    [Fact]
    public void DefaultsAreQemus()
    {
        var o = Qcow2CreateOptions.Read(new OptionReader(new JsonObject { ["size"] = 1L << 20 }));
        Assert.Equal(new Qcow2CreateOptions { Size = 1 << 20, Compat = "v3" }, o);
    }

    [Fact]
    public void EveryBlockdevCreateKeyIsBound()
    {
        var r = new OptionReader((JsonObject)JsonNode.Parse("""
            {"size": "16M", "version": "v2", "backing-file": "b.qcow2", "backing-fmt": "qcow2", "cluster-size": 4096,
             "preallocation": "metadata", "lazy-refcounts": true, "refcount-bits": 8, "extended-l2": true,
             "compression-type": "zstd", "data-file-raw": true}
            """)!);
        var o = Qcow2CreateOptions.Read(r);
        r.EnsureAllConsumed();
        Assert.Equal(
            new Qcow2CreateOptions
            {
                Size = 16 << 20, Compat = "v2", BackingFile = "b.qcow2", BackingFormat = "qcow2", ClusterSize = 4096,
                Preallocation = Qcow2Preallocation.Metadata, LazyRefcounts = true, RefcountBits = 8, ExtendedL2 = true,
                CompressionType = "zstd", DataFileRaw = true,
            },
            o);
    }

    [Theory]
    [InlineData("""{}""", "Parameter 'size' is missing")]
    [InlineData("""{"size": 1024, "preallocation": "most"}""", "Parameter 'preallocation' does not accept value 'most'")]
    [InlineData("""{"size": 1024, "backing-fmt": "raw"}""", "Backing format cannot be used without backing file")]
    [InlineData("""{"size": 1024, "lazy-refcounts": "perhaps"}""", "Parameter 'lazy-refcounts' expects 'on' or 'off'")]
    public void BadValuesAreRefusedWithQemusWords(string json, string message)
    {
        var e = Assert.Throws<BlockException>(() => Qcow2CreateOptions.Read(new OptionReader((JsonObject)JsonNode.Parse(json)!)));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public async Task QemuImgNamesAndBlockdevCreateNamesMakeTheSameImage()
    {
        await using var h = new Qcow2Harness();
        var driver = new Qcow2Driver();
        var qemuImg = ImageCreation.ParseOptions(driver, new Dictionary<string, string>
        {
            ["size"] = "8M", ["compat"] = "1.1", ["cluster_size"] = "16K", ["lazy_refcounts"] = "on", ["refcount_bits"] = "32",
            ["extended_l2"] = "on", ["compression_type"] = "zstd", ["backing_file"] = "base.qcow2", ["backing_fmt"] = "qcow2",
        });
        await driver.CreateFileAsync(h.Graph, "a.qcow2", qemuImg);

        await ImageCreation.CreateProtocolFileAsync(h.Graph, "b.qcow2", new JsonObject { ["size"] = 0L });
        var proto = await ImageCreation.OpenProtocolAsync(h.Graph, "b.qcow2");
        await driver.CreateAsync(h.Graph, new OptionReader((JsonObject)JsonNode.Parse($$"""
            {"file": "{{proto.NodeName}}", "size": 8388608, "version": "v3", "cluster-size": 16384, "lazy-refcounts": true,
             "refcount-bits": 32, "extended-l2": true, "compression-type": "zstd", "backing-file": "base.qcow2", "backing-fmt": "qcow2"}
            """)!));
        await h.Graph.RemoveAsync(proto.NodeName);

        Assert.Equal(Keep(h, "a.qcow2"), Keep(h, "b.qcow2"));
        var node = await h.OpenAsync("a.qcow2", """{"backing": null}""", readOnly: true);
        var info = (IImageInfoSource)node;
        Assert.Equal(new BlockDriverInfo(16384, false), info.DriverInfo);
        Assert.Equal(new BackingFileName("base.qcow2", "qcow2"), info.BackingFile);
        Assert.Equal("qcow2", info.SpecificInfo!.Type);
        Assert.True(JsonNode.DeepEquals(
            JsonNode.Parse("""
                {"compat": "1.1", "extended-l2": true, "lazy-refcounts": true, "corrupt": false, "refcount-bits": 32, "compression-type": "zstd"}
                """),
            info.SpecificInfo.Data));
    }

    [Fact]
    public async Task Version2ShowsOnlyWhatQemuShowsForIt()
    {
        await using var h = new Qcow2Harness();
        var driver = new Qcow2Driver();
        await driver.CreateFileAsync(h.Graph, "v2.qcow2", ImageCreation.ParseOptions(driver, new Dictionary<string, string> { ["size"] = "1M", ["compat"] = "0.10" }));
        Keep(h, "v2.qcow2");
        var node = await h.OpenAsync("v2.qcow2", readOnly: true);
        Assert.True(JsonNode.DeepEquals(
            JsonNode.Parse("""{"compat": "0.10", "refcount-bits": 16, "compression-type": "zlib"}"""),
            ((IImageInfoSource)node).SpecificInfo!.Data));
        Assert.Null(((IImageInfoSource)node).BackingFile);
    }

    /// <summary>The bytes the creator wrote, kept as the file's contents for the next open.</summary>
    private static byte[] Keep(Qcow2Harness h, string name) => h.Files.Files[name] = h.Files.Opened[name].Snapshot();
}
