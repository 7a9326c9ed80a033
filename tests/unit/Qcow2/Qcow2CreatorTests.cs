using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Images we create are clean for `qemu-img check`, described as asked by `qemu-img info`, and usable by QEMU.</summary>
public sealed class Qcow2CreatorTests
{
    public static TheoryData<string> Cases => new()
    {
        "default", "cluster512", "cluster2m", "v2", "refcount1", "refcount64", "lazy", "extl2", "zstd",
        "prealloc-metadata", "prealloc-full", "prealloc-extl2-backing", "backing", "datafile", "datafile-raw", "huge", "prealloc-refcount64",
    };

    private static Qcow2CreateOptions Options(string name, TempDir dir) => name switch
    {
        "default" => new() { Size = 32 << 20 },
        "cluster512" => new() { Size = 4 << 20, ClusterSize = 512 },
        "cluster2m" => new() { Size = 64 << 20, ClusterSize = 2 << 20 },
        "v2" => new() { Size = 32 << 20, Compat = "0.10" },
        "refcount1" => new() { Size = 32 << 20, RefcountBits = 1, ClusterSize = 4096 },
        "refcount64" => new() { Size = 32 << 20, RefcountBits = 64, ClusterSize = 512 },
        "lazy" => new() { Size = 32 << 20, LazyRefcounts = true },
        "extl2" => new() { Size = 32 << 20, ExtendedL2 = true },
        "zstd" => new() { Size = 32 << 20, CompressionType = "zstd" },
        "prealloc-metadata" => new() { Size = 24 << 20, Preallocation = Qcow2Preallocation.Metadata, ClusterSize = 4096 },
        "prealloc-full" => new() { Size = 8 << 20, Preallocation = Qcow2Preallocation.Full },
        "prealloc-extl2-backing" => new() { Size = 8 << 20, Preallocation = Qcow2Preallocation.Metadata, ExtendedL2 = true, BackingFile = "base.qcow2", BackingFormat = "qcow2" },
        "backing" => new() { Size = 8 << 20, BackingFile = "base.qcow2", BackingFormat = "qcow2" },
        "datafile" => new() { Size = 8 << 20, DataFile = dir["data.bin"] },
        "datafile-raw" => new() { Size = 8 << 20, DataFile = dir["data.bin"], DataFileRaw = true },
        "huge" => new() { Size = 1L << 40 },

        // One L2 table maps as many clusters as one refcount block counts: runs span whole blocks.
        "prealloc-refcount64" => new() { Size = 8 << 20, ClusterSize = 4096, RefcountBits = 64, Preallocation = Qcow2Preallocation.Metadata },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task CreatedImagesAreCleanAndUsable(string name)
    {
        using var dir = new TempDir();
        var o = Options(name, dir);
        if (o.BackingFile is not null)
        {
            Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], "8M");
            Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0xb1 0 8M", dir["base.qcow2"]);
        }

        await using (var h = new Qcow2Harness())
        {
            await Qcow2Creator.CreateAsync(h.Graph, dir["new.qcow2"], o);
            Assert.Empty(h.Graph.Nodes);
            h.Save(dir["new.qcow2"]);
            if (o.DataFile is not null)
            {
                h.Save(o.DataFile);
            }
        }

        var (code, output) = Check(dir["new.qcow2"]);
        Assert.True(code == 0, output);
        var info = JsonNode.Parse(Ok("qemu-img", "info", "-U", "--output=json", dir["new.qcow2"]))!;
        Assert.Equal(o.Size, (long)info["virtual-size"]!);
        Assert.Equal(o.ClusterSize, (int)info["cluster-size"]!);
        var specific = info["format-specific"]!["data"]!;
        Assert.Equal(o.Compat, (string)specific["compat"]!);
        Assert.Equal(o.RefcountBits, (int)specific["refcount-bits"]!);
        if (o.Compat == "1.1")
        {
            Assert.Equal(o.LazyRefcounts, (bool)specific["lazy-refcounts"]!);
            Assert.Equal(o.ExtendedL2, (bool?)specific["extended-l2"] ?? false);
            Assert.Equal(o.CompressionType, (string)specific["compression-type"]!);
        }

        if (o.BackingFile is not null)
        {
            Assert.Equal(o.BackingFile, (string)info["backing-filename"]!);
        }

        if (o.DataFile is not null)
        {
            Assert.Equal(o.DataFile, (string)specific["data-file"]!);
            Assert.Equal(o.DataFileRaw, (bool)specific["data-file-raw"]!);
        }

        // QEMU can write to it, and we read what it wrote.
        if (o.Size <= 64 << 20)
        {
            Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 4096 100000", "-c", "write -z 1M 64k", dir["new.qcow2"]);
            var expected = ConvertToRaw(dir["new.qcow2"], dir.Path);
            await using var h = new Qcow2Harness();
            var node = await h.OpenAsync(dir["new.qcow2"], readOnly: true);
            Assert.Equal(expected, await Qcow2Harness.ReadAllAsync(node));
            (code, output) = Check(dir["new.qcow2"]);
            Assert.True(code == 0, output);
        }
    }

    [Theory]
    [InlineData(1000, 65536, "1.1", "multiple of 512")]
    [InlineData(1 << 20, 1000, "1.1", "Cluster size")]
    [InlineData(1 << 20, 65536, "2.0", "compatibility level")]
    public async Task InvalidOptionsAreRefused(long size, int cluster, string compat, string message)
    {
        var file = new InMemoryFileNode("f", "f", [], readOnly: false);
        var e = await Assert.ThrowsAsync<BlockException>(() =>
            Qcow2Creator.CreateAsync(file, new Qcow2CreateOptions { Size = size, ClusterSize = cluster, Compat = compat }).AsTask());
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public async Task ExtendedL2NeedsLargeClusters()
    {
        var file = new InMemoryFileNode("f", "f", [], readOnly: false);
        var e = await Assert.ThrowsAsync<BlockException>(() =>
            Qcow2Creator.CreateAsync(file, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096, ExtendedL2 = true }).AsTask());
        Assert.Contains("16384", e.Message);
    }
}
