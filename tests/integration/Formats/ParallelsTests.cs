using System.Buffers.Binary;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// parallels beyond the common foreign-format tests: the inuse mark while served, images with the
/// old magic, the runtime prealloc options, qemu-img's preallocation option and damaged headers.
/// </summary>
public sealed class ParallelsTests
{
    private const int OffInUse = 44;
    private const uint InUse = 0x746f6e59;

    private static uint ReadLe32(string path, long offset)
    {
        using var f = File.OpenRead(path);
        var bytes = new byte[4];
        f.Position = offset;
        f.ReadExactly(bytes);
        return BinaryPrimitives.ReadUInt32LittleEndian(bytes);
    }

    /// <summary>Served writable, the header is marked in use (QEMU's inuse magic); after a clean stop it is not, and qemu-img finds the image clean and its file cut to the data.</summary>
    [Fact]
    public async Task InUseMarkWhileServedWritable()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f parallels img {Size}");
        await using (var d = await ServeAsync(dir, "parallels", dir["img"], writable: true))
        {
            Assert.Equal(InUse, ReadLe32(dir["img"], OffInUse));
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x31 0 1536K"]))).Check("write");
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(0u, ReadLe32(dir["img"], OffInUse));
        Assert.Equal(3L << 20, new FileInfo(dir["img"]).Length);
        await AssertCheckCleanAsync(dir["img"], "parallels");
        (await Tool.ShAsync(Io("parallels", dir["img"], ["read -P 0x31 0 1536K", "read -P 0 1536K 512K"]))).Check("read back");

        await using (var d = await ServeAsync(dir, "parallels", dir["img"], writable: false))
        {
            Assert.Equal(0u, ReadLe32(dir["img"], OffInUse));
        }
    }

    /// <summary>An image left marked in use (a writer killed) is served read-only, refused read-write with QEMU's error, and the daemon says so at once.</summary>
    [Fact]
    public async Task ImageNotClosedCleanlyIsRefusedReadWrite()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f parallels img {Size} && {Io("parallels", "img", ["write -P 0x21 0 1M"])}");
        OpenErrors.PatchLe32(dir["img"], OffInUse, InUse);
        await OpenErrors.AssertSameAsQsdAsync("parallels", dir["img"], readOnly: false);
        await using var d = await ServeAsync(dir, "parallels", dir["img"], writable: false);
        (await Tool.ShAsync($"qemu-io -r -f raw -c 'read -P 0x21 0 1M' '{Uri(dir)}'")).Check("read-only read");
    }

    /// <summary>
    /// The old magic ("WithoutFreeSpace"): BAT entries are sector offsets. An image qemu-img wrote, turned
    /// into one, reads as qemu-img reads it, and our writes to it read back in qemu-img and check clean.
    /// </summary>
    [Fact]
    public async Task OldMagicImagesReadAndWriteAsQemuDoes()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f parallels -o cluster_size=64K img {Size} && {Io("parallels", "img", Writes)}");
        var image = dir["img"];
        var bytes = File.ReadAllBytes(image);
        "WithoutFreeSpace"u8.CopyTo(bytes);
        var tracks = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(28));
        var entries = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(32));
        for (var i = 0; i < entries; i++)
        {
            var at = bytes.AsSpan(64 + (i * 4));
            BinaryPrimitives.WriteUInt32LittleEndian(at, BinaryPrimitives.ReadUInt32LittleEndian(at) * tracks);
        }

        File.WriteAllBytes(image, bytes);
        await ShAsync(dir, "qemu-img convert -f parallels -O raw img expected.raw");
        Assert.Contains(File.ReadAllBytes(dir["expected.raw"]), b => b != 0);
        await using (var d = await ServeAsync(dir, "parallels", image, writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), Overwrites))).Check("writes");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, Io("raw", "expected.raw", Overwrites));
        Assert.Equal("WithoutFreeSpace", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(image), 0, 16));
        await AssertCheckCleanAsync(image, "parallels");
        await AssertSameAsync(dir["expected.raw"], image, "parallels");
    }

    /// <summary>prealloc-mode and prealloc-size are honoured: the file grows ahead of the data while served and is cut back at close; other modes are refused.</summary>
    [Theory]
    [InlineData("falloc", "4M")]
    [InlineData("truncate", "16M")]
    public async Task PreallocOptionsAreHonoured(string mode, string size)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f parallels img {Size}");
        var grow = size == "4M" ? 4L << 20 : 16L << 20;
        await using (var d = await Daemon.StartAsync(dir,
                         "--blockdev", $"driver=file,node-name=f0,filename={dir["img"]}",
                         "--blockdev", $"driver=parallels,node-name=n0,file=f0,prealloc-mode={mode},prealloc-size={size}",
                         "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
                         "--export", "type=nbd,id=e0,node-name=n0,name=disk,writable=on"))
        {
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x41 0 4096"]))).Check("write");
            Assert.Equal((2L << 20) + grow, new FileInfo(dir["img"]).Length);
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(2L << 20, new FileInfo(dir["img"]).Length);
        await AssertCheckCleanAsync(dir["img"], "parallels");
        var bad = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--blockdev", $"driver=parallels,node-name=n0,file.driver=file,file.filename={dir["img"]},prealloc-mode=full"], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("Parameter 'prealloc-mode' does not accept value 'full'", bad.Stderr);
    }

    /// <summary>qemu-img's preallocation option: metadata maps every cluster (qemu-img reads zeroes and checks it clean); falloc and full are refused.</summary>
    [Fact]
    public async Task PreallocationMetadataMapsEveryCluster()
    {
        using var dir = new TempDir();
        (await Tool.ShAsync($"cd {dir.Path} && {Daemon.ExportServerPath} create -f parallels -o cluster_size=64K,preallocation=metadata img 1M")).Check("create");
        Assert.Equal(17L * 65536, new FileInfo(dir["img"]).Length);
        await AssertCheckCleanAsync(dir["img"], "parallels");
        var check = (await Tool.RunAsync("qemu-img", "check", "-f", "parallels", dir["img"])).Check("check").Stdout;
        Assert.Contains("16/16 = 100.00% allocated", check);
        (await Tool.ShAsync(Io("parallels", dir["img"], ["read -P 0 0 1M", "write -P 0x12 100K 8K", "read -P 0x12 100K 8K"]))).Check("qemu-io");
        var refused = await Tool.ShAsync($"cd {dir.Path} && {Daemon.ExportServerPath} create -f parallels -o preallocation=full img2 1M");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("Preallocation mode 'full' is not supported for parallels", refused.Stderr);
    }

    /// <summary>
    /// In a chain: a backing node given by the backing option (the header names none) shows through
    /// unmapped clusters, and a partial write copies the rest of its cluster from it; qemu-img, given
    /// the same chain, reads the result as the same write on raw.
    /// </summary>
    [Fact]
    public async Task BackingNodeShowsThroughAndIsCopiedOnWrite()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f raw base {Size} && {Io("raw", "base", Writes)}");
        await ShAsync(dir, $"qemu-img create -q -f parallels -o cluster_size=64K top {Size}");
        string[] writes = ["write -P 0x99 1000 5000", "write -P 0x9a 20M 70000"];
        await using (var d = await Daemon.StartAsync(dir,
                         "--blockdev", $"driver=raw,node-name=b0,read-only=on,file.driver=file,file.filename={dir["base"]},file.read-only=on",
                         "--blockdev", $"driver=parallels,node-name=n0,backing=b0,file.driver=file,file.filename={dir["top"]}",
                         "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
                         "--export", "type=nbd,id=e0,node-name=n0,name=disk,writable=on"))
        {
            await AssertSameAsync(dir["base"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), writes))).Check("writes");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, $"cp base expected.raw && {Io("raw", "expected.raw", writes)}");
        await AssertCheckCleanAsync(dir["top"], "parallels");
        var chain = $"json:{{\"driver\":\"parallels\",\"file\":{{\"driver\":\"file\",\"filename\":\"{dir["top"]}\"}},\"backing\":{{\"driver\":\"raw\",\"file\":{{\"driver\":\"file\",\"filename\":\"{dir["base"]}\"}}}}}}";
        var cmp = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", dir["expected.raw"], chain);
        Assert.True(cmp.ExitCode == 0, cmp.Stdout + cmp.Stderr);
        // The top holds three clusters of its own: the two partial writes' clusters (the second spans two).
        Assert.Equal(4L * 65536, new FileInfo(dir["top"]).Length);
    }

    /// <summary>Damaged headers are refused with QEMU's message: (offset, 32-bit little-endian value).</summary>
    [Theory]
    [InlineData(0, 0x68746957u + 1)]
    [InlineData(16, 3u)]
    [InlineData(28, 0u)]
    [InlineData(28, 0x1000000u)]
    [InlineData(32, 0x20000000u)]
    public async Task DamagedHeaderGivesQemusError(long offset, uint value)
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -q -f parallels img 4M");
        OpenErrors.PatchLe32(dir["img"], offset, value);
        await OpenErrors.AssertSameAsQsdAsync("parallels", dir["img"]);
    }

    /// <summary>A BAT longer than the file is a clear error (memory stays bounded by the file), and the daemon keeps serving others.</summary>
    [Fact]
    public async Task BatBeyondTheFileIsRefused()
    {
        using var dir = new TempDir();
        await ShAsync(dir, "qemu-img create -q -f parallels img 4M");
        OpenErrors.PatchLe32(dir["img"], 32, 0x10000000u);
        var r = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--blockdev", $"driver=parallels,node-name=n0,read-only=on,file.driver=file,file.filename={dir["img"]},file.read-only=on"], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("parallels: the BAT (268435456 entries)", r.Stderr);
        Assert.Contains("extends beyond the end of the file", r.Stderr);
    }
}
