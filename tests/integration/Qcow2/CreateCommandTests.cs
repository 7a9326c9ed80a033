using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>`export-server create` takes qemu-img create's arguments and prints its line; the images pass qemu-img.</summary>
public sealed class CreateCommandTests
{
    private static Task<Tool.Result> CreateAsync(params string[] args) => Tool.RunAsync(Daemon.ExportServerPath, ["create", .. args]);

    private static async Task<JsonElement> InfoAsync(string image) =>
        JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "--output=json", image)).Check("info").Stdout).RootElement;

    [Fact]
    public async Task OutputLinesMatchQemuImg()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["q"]);
        Directory.CreateDirectory(dir["o"]);
        string[][] cases =
        [
            ["-f", "qcow2", "a.qcow2", "1G"],
            ["-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2"],
            ["-f", "qcow2", "-o", "compat=0.10,cluster_size=128K,preallocation=metadata", "c.qcow2", "16M"],
            ["-f", "qcow2", "-o", "lazy_refcounts=on,extended_l2=on,compression_type=zstd,refcount_bits=8", "d.qcow2", "16M"],
            ["-f", "raw", "-o", "preallocation=full", "e.raw", "1M"],
            ["f.raw", "1M"],
            ["-f", "qcow2", "g.qcow2", "1000"],
            ["h.raw", "1000"],
        ];
        foreach (var args in cases)
        {
            var theirs = (await Tool.ShAsync($"cd {dir["q"]} && qemu-img create {string.Join(' ', args)}")).Check("qemu-img");
            var ours = (await Tool.ShAsync($"cd {dir["o"]} && {Daemon.ExportServerPath} create {string.Join(' ', args)}")).Check("create");
            Assert.Equal(theirs.Stdout, ours.Stdout);
        }

        foreach (var image in new[] { "a.qcow2", "b.qcow2", "c.qcow2", "d.qcow2" })
        {
            (await Tool.RunAsync("qemu-img", "check", dir[$"o/{image}"])).Check($"check {image}");
            (await Tool.RunAsync("qemu-img", "compare", dir[$"o/{image}"], dir[$"q/{image}"])).Check($"compare {image}");
        }

        var b = await InfoAsync(dir["o/b.qcow2"]);
        Assert.Equal(1L << 30, b.GetProperty("virtual-size").GetInt64());
        Assert.Equal("a.qcow2", b.GetProperty("backing-filename").GetString());
        var c = await InfoAsync(dir["o/c.qcow2"]);
        Assert.Equal("0.10", c.GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString());
        Assert.Equal(131072, c.GetProperty("cluster-size").GetInt32());
        var d = (await InfoAsync(dir["o/d.qcow2"])).GetProperty("format-specific").GetProperty("data");
        Assert.True(d.GetProperty("extended-l2").GetBoolean());
        Assert.Equal("zstd", d.GetProperty("compression-type").GetString());
        Assert.Equal(8, d.GetProperty("refcount-bits").GetInt32());
        Assert.Equal("raw", (await InfoAsync(dir["o/f.raw"])).GetProperty("format").GetString());
        Assert.Equal(1 << 20, new FileInfo(dir["o/e.raw"]).Length);
        Assert.Equal(1024, (await InfoAsync(dir["o/g.qcow2"])).GetProperty("virtual-size").GetInt64());
        Assert.Equal(1024, new FileInfo(dir["o/h.raw"]).Length);
    }

    [Fact]
    public async Task ExternalDataFileImageWorksWithQemuIo()
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        (await CreateAsync("-f", "qcow2", "-o", $"data_file={dir["img.data"]},data_file_raw=on", image, "8M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 1M 64K", image)).Check("write");
        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        Assert.Equal(0x44, (await File.ReadAllBytesAsync(dir["img.data"]))[1 << 20]);
    }

    [Theory]
    [InlineData(new[] { "-f", "qcow2", "x.qcow2" }, "x.qcow2: Image creation needs a size parameter")]
    [InlineData(new[] { "-f", "qcow2", "-o", "cluster_size=1000", "x.qcow2", "1M" }, "x.qcow2: Cluster size must be a power of two between 512 and 2048k")]
    [InlineData(new[] { "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "x.qcow2" }, "x.qcow2: Could not open backing file")]
    [InlineData(new[] { "-f", "qcow2", "-o", "bogus=1", "x.qcow2", "1M" }, "x.qcow2: Invalid parameter 'bogus'")]
    [InlineData(new[] { "-f", "nope", "x.img", "1M" }, "x.img: Unknown file format 'nope'")]
    [InlineData(new[] { "-f", "qcow2", "-o", "compat=0.10,lazy_refcounts=on", "x.qcow2", "1M" }, "Lazy refcounts only supported with compatibility level 1.1")]
    public async Task BadArgumentsFailWithQemuImgsMessage(string[] args, string message)
    {
        using var dir = new TempDir();
        var r = await Tool.ShAsync($"cd {dir.Path} && {Daemon.ExportServerPath} create {string.Join(' ', args)}");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
    }
}
