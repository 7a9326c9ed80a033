using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// Damaged qcow2 images make the daemon exit 1 before it serves anything, with a message naming
/// the file and the field at fault — never a hang, a crash or an attempt to allocate the damage.
/// </summary>
public sealed class CorruptImageTests
{
    /// <summary>Overwrites big-endian bytes of the header in place.</summary>
    private static async Task PatchAsync(string path, int offset, params byte[] bytes)
    {
        await using var f = File.Open(path, FileMode.Open);
        f.Position = offset;
        await f.WriteAsync(bytes);
    }

    [Theory]
    [InlineData("truncated-header", "header truncated (50 bytes, at least 72 needed)")]
    [InlineData("l1-past-eof", "l1_table_offset 0x100000000 (+8 bytes) beyond end of file")]
    [InlineData("huge-size", "size 4611686018427387904 too large")]
    [InlineData("huge-l1", "l1_size 268435456 too large")]
    [InlineData("refcount-table-past-eof", "refcount_table_offset 0x10000000000 (+65536 bytes) beyond end of file")]
    [InlineData("backing-loop", "backing file loop")]
    public async Task DamagedImageIsRefusedBeforeServing(string damage, string message)
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
        switch (damage)
        {
            case "truncated-header":
                File.WriteAllBytes(image, File.ReadAllBytes(image)[..50]);
                break;
            case "l1-past-eof":
                await PatchAsync(image, 40, 0, 0, 0, 1, 0, 0, 0, 0);
                break;
            case "huge-size":
                await PatchAsync(image, 24, 0x40, 0, 0, 0, 0, 0, 0, 0);
                break;
            case "huge-l1":
                await PatchAsync(image, 36, 0x10, 0, 0, 0);
                break;
            case "refcount-table-past-eof":
                await PatchAsync(image, 48, 0, 0, 1, 0, 0, 0, 0, 0);
                break;
            case "backing-loop":
                File.Delete(image);
                (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", dir["other.qcow2"], "-F", "qcow2", image, "16M")).Check("create");
                (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", image, "-F", "qcow2", dir["other.qcow2"], "16M")).Check("create");
                break;
        }

        await using var d = Daemon.Launch(Daemon.ExportServerPath,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=q0,name=disk",
        ]);
        Assert.Equal(1, await d.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains(message, d.Stderr);
        Assert.Contains("img.qcow2", d.Stderr);
        Assert.False(File.Exists(dir["nbd.sock"]));
    }

    /// <summary>
    /// Serves an image whose first L2 entry points 512 bytes into its cluster: a client's read gets
    /// EIO, the monitor gets BLOCK_IMAGE_CORRUPTED, the header gets the corrupt bit, writes fail.
    /// Returns the event's data and what the client saw.
    /// </summary>
    private static async Task<(JsonObject Event, string Client)> ServeUnalignedAsync(TempDir dir, bool qsd)
    {
        var image = dir[qsd ? "qsd.qcow2" : "ours.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "1M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", image)).Check("fill");
        var bytes = await File.ReadAllBytesAsync(image);
        Assert.Equal(0x8000000000050000UL, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(0x40000)));
        await PatchAsync(image, 0x40000 + 6, 0x02, 0x00);
        var nbd = dir[qsd ? "qsd-nbd.sock" : "nbd.sock"];
        var qmp = dir[qsd ? "qsd-qmp.sock" : "qmp.sock"];
        string[] args =
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=disk,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={nbd}",
            "--export", "type=nbd,id=e0,node-name=disk,name=d,writable=on",
            "--chardev", $"socket,id=m0,path={qmp},server=on,wait=off", "--monitor", "chardev=m0",
        ];
        await using var d = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args);
        await using var c = await QmpClient.ConnectAsync(qmp);
        var client = await Tool.PythonAsync($$"""
            import nbd
            h = nbd.NBD()
            h.connect_uri("nbd+unix:///d?socket={{nbd}}")
            for f in (lambda: h.pread(4096, 0), lambda: h.pwrite(b"x" * 512, 131072)):
                try:
                    f()
                    print("ok")
                except nbd.Error as e:
                    print(e.errno)
            """);
        var e = await c.WaitEventAsync("BLOCK_IMAGE_CORRUPTED");
        Assert.Equal(0, await d.StopAsync());
        var info = (await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", image)).Check("info").Stdout;
        Assert.True(JsonNode.Parse(info)!["format-specific"]!["data"]!["corrupt"]!.GetValue<bool>(), info);
        Assert.Contains("qcow2: Marking image as corrupt: Cluster allocation offset 0x50200 unaligned", d.Stderr);
        return ((JsonObject)e["data"]!, client.Check("nbd client").Stdout);
    }

    [Fact]
    public async Task UnalignedClusterOffsetIsEioAndMarksTheImageCorruptAsQemuDoes()
    {
        using var dir = new TempDir();
        var (ours, client) = await ServeUnalignedAsync(dir, qsd: false);
        var (theirs, _) = await ServeUnalignedAsync(dir, qsd: true);
        Assert.Equal("EIO", client.Split('\n')[0].Trim());
        Assert.NotEqual("ok", client.Split('\n')[1].Trim());
        Assert.Equal("Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)", ours["msg"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(theirs, ours), $"qemu-storage-daemon: {theirs.ToJsonString()}, ours: {ours.ToJsonString()}");
    }
}
