using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>The daemon serving raw images over NBD to qemu's and libnbd's own clients.</summary>
public sealed class NbdClientTests
{
    /// <summary>A 64 MiB sparse raw image: data at 0-1 MiB and 8-9 MiB, the rest holes.</summary>
    private static async Task<string> MakeImageAsync(TempDir dir, string name = "disk.raw")
    {
        var path = dir[name];
        await Tool.RunAsync("qemu-img", "create", "-f", "raw", path, "64M").ContinueWith(t => t.Result.Check("create"));
        await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 8M 1M", path)
            .ContinueWith(t => t.Result.Check("qemu-io"));
        return path;
    }

    private static string[] ServeArgs(string image, string socket, bool writable = true, string name = "disk") =>
    [
        "--blockdev", $"driver=file,node-name=f0,filename={image}",
        "--blockdev", "driver=raw,node-name=r0,file=f0",
        "--nbd-server", $"addr.type=unix,addr.path={socket}",
        "--export", $"type=nbd,id=e0,node-name=r0,name={name},writable={(writable ? "on" : "off")}",
    ];

    private static string Uri(string socket, string name = "disk") => $"nbd+unix:///{name}?socket={socket}";

    [Fact]
    public async Task QemuImgCompareAndConvertSeeTheImage()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        var copy = dir["copy.raw"];
        File.Copy(image, copy);
        await using var d = await Daemon.StartAsync(dir, ServeArgs(image, dir["s.sock"]));

        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", Uri(dir["s.sock"]), copy)).Check("compare");
        (await Tool.RunAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", Uri(dir["s.sock"]), dir["out.raw"])).Check("convert");
        Assert.Equal(await File.ReadAllBytesAsync(copy), await File.ReadAllBytesAsync(dir["out.raw"]));
    }

    [Fact]
    public async Task QemuImgMapShowsDataAndHoles()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        await using var d = await Daemon.StartAsync(dir, ServeArgs(image, dir["s.sock"], writable: false));

        var map = (await Tool.RunAsync("qemu-img", "map", "-f", "raw", "--output=json", Uri(dir["s.sock"]))).Check("map").Stdout;
        var extents = JsonDocument.Parse(map).RootElement.EnumerateArray()
            .Select(e => (Start: e.GetProperty("start").GetInt64(), Length: e.GetProperty("length").GetInt64(), Data: e.GetProperty("data").GetBoolean()))
            .ToList();
        Assert.Contains(extents, e => e.Data && e.Start == 0 && e.Length == 1 << 20);
        Assert.Contains(extents, e => e.Data && e.Start == 8 << 20 && e.Length == 1 << 20);
        Assert.Equal(64L << 20, extents.Sum(e => e.Length));
        Assert.Equal(2L << 20, extents.Where(e => e.Data).Sum(e => e.Length));
    }

    [Fact]
    public async Task QemuIoReadWriteZeroDiscardFlush()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        await using (var d = await Daemon.StartAsync(dir, ServeArgs(image, dir["s.sock"])))
        {
            var uri = Uri(dir["s.sock"]);
            (await Tool.RunAsync("qemu-io", "-f", "raw",
                "-c", "read -P 0x11 0 1M",
                "-c", "write -P 0x33 100k 5000",
                "-c", "write -z 8M 64k",
                "-c", "write -P 0x44 -f 20M 128k",
                "-c", "discard 30M 1M",
                "-c", "flush",
                "-c", "read -P 0x33 100k 5000",
                "-c", "read -P 0 8M 64k",
                "-c", "read -P 0x22 8256k 960k",
                "-c", "read -P 0x44 20M 128k",
                uri)).Check("qemu-io");
            Assert.Equal(0, await d.StopAsync());
        }

        // After the daemon is gone, the file holds exactly what was written.
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x33 100k 5000", "-c", "read -P 0 8M 64k", "-c", "read -P 0x44 20M 128k", image))
            .Check("qemu-io on the file");
    }

    [Fact]
    public async Task NbdinfoJsonListMapAndCan()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=raw,node-name=r0,file=f0",
            "--blockdev", "driver=raw,node-name=r1,file=f0,read-only=on",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=r0,name=disk,writable=on,description=the disk",
            "--export", "type=nbd,id=e1,node-name=r1,name=ro");
        var uri = Uri(dir["s.sock"]);

        var info = JsonDocument.Parse((await Tool.RunAsync("nbdinfo", "--json", uri)).Check("nbdinfo").Stdout).RootElement;
        Assert.Equal("newstyle-fixed", info.GetProperty("protocol").GetString());
        var export = info.GetProperty("exports")[0];
        Assert.Equal(64L << 20, export.GetProperty("export-size").GetInt64());
        Assert.Equal("the disk", export.GetProperty("description").GetString());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        Assert.True(export.GetProperty("can_flush").GetBoolean());
        Assert.True(export.GetProperty("can_fua").GetBoolean());
        Assert.True(export.GetProperty("can_zero").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.Contains(export.GetProperty("contexts").EnumerateArray(), c => c.GetString() == "base:allocation");

        var list = (await Tool.RunAsync("nbdinfo", "--list", "--json", $"nbd+unix://?socket={dir["s.sock"]}")).Check("list").Stdout;
        var names = JsonDocument.Parse(list).RootElement.GetProperty("exports").EnumerateArray().Select(e => e.GetProperty("export-name").GetString()).ToList();
        Assert.Equal(["disk", "ro"], names.Order().ToList());

        var map = (await Tool.RunAsync("nbdinfo", "--map", uri)).Check("map").Stdout;
        var lines = map.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.Equal(["0", "1048576", "0"], lines[0][..3]);
        Assert.Equal(["1048576", "7340032", "3"], lines[1][..3]);
        Assert.Equal(["8388608", "1048576", "0"], lines[2][..3]);

        Assert.Equal(0, (await Tool.RunAsync("nbdinfo", "--can", "write", uri)).ExitCode);
        Assert.Equal(0, (await Tool.RunAsync("nbdinfo", "--can", "zero", uri)).ExitCode);
        Assert.Equal(0, (await Tool.RunAsync("nbdinfo", "--can", "fua", uri)).ExitCode);
        var ro = Uri(dir["s.sock"], "ro");
        Assert.Equal(2, (await Tool.RunAsync("nbdinfo", "--can", "write", ro)).ExitCode);
        Assert.Equal(0, (await Tool.RunAsync("nbdinfo", "--is", "read-only", ro)).ExitCode);
    }

    [Fact]
    public async Task QemuNbdListShowsExports()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        await using var d = await Daemon.StartAsync(dir, ServeArgs(image, dir["s.sock"], name: "listed"));
        var list = (await Tool.RunAsync("qemu-nbd", "--list", "-k", dir["s.sock"])).Check("qemu-nbd --list").Stdout;
        Assert.Contains("export: 'listed'", list);
        Assert.Contains("size:  67108864", list);
    }

    [Fact]
    public async Task NbdcopyRoundTrip256MiB()
    {
        using var dir = new TempDir();
        var source = dir["src.raw"];
        await Tool.ShAsync($"head -c 256M /dev/urandom > {source}").ContinueWith(t => t.Result.Check("urandom"));
        var target = dir["dst.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", target, "256M")).Check("create");
        await using var d = await Daemon.StartAsync(dir, ServeArgs(target, dir["s.sock"]));
        var uri = Uri(dir["s.sock"]);

        (await Tool.RunAsync("nbdcopy", [source, uri], TimeSpan.FromMinutes(3))).Check("nbdcopy in");
        (await Tool.RunAsync("nbdcopy", [uri, dir["back.raw"]], TimeSpan.FromMinutes(3))).Check("nbdcopy out");
        (await Tool.RunAsync("cmp", source, dir["back.raw"])).Check("cmp");
        Assert.Equal(0, await d.StopAsync());
        (await Tool.RunAsync("cmp", source, target)).Check("cmp target");
    }

    [Fact]
    public async Task TcpExportWorksOnIpv4AndIpv6()
    {
        using var dir = new TempDir();
        var image = await MakeImageAsync(dir);
        var port4 = FreePort.Get();
        await using (var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image},read-only=on",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port4}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk"))
        {
            (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", $"nbd://127.0.0.1:{port4}/disk", image)).Check("compare v4");
        }

        var port6 = FreePort.Get();
        await using (var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image},read-only=on",
            "--nbd-server", $"addr.type=inet,addr.host=::1,addr.port={port6}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk"))
        {
            (await Tool.RunAsync("nbdinfo", "--size", $"nbd://[::1]:{port6}/disk")).Check("nbdinfo v6");
        }
    }

    [Fact]
    public async Task EightConcurrentWritersToDisjointRanges()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "64M")).Check("create");
        await using var d = await Daemon.StartAsync(dir, ServeArgs(image, dir["s.sock"]));
        var uri = Uri(dir["s.sock"]);

        var writers = Enumerable.Range(0, 8).Select(i => Tool.RunAsync("qemu-io", "-f", "raw",
            "-c", $"aio_write -P {i + 1} {i * 8}M 4M", "-c", $"aio_write -P {i + 0x41} {(i * 8) + 4}M 4M", "-c", "aio_flush", uri)).ToList();
        foreach (var w in writers)
        {
            (await w).Check("writer");
        }

        var checks = Enumerable.Range(0, 8).SelectMany(i => new[] { "-c", $"read -P {i + 1} {i * 8}M 4M", "-c", $"read -P {i + 0x41} {(i * 8) + 4}M 4M" });
        (await Tool.RunAsync("qemu-io", ["-f", "raw", .. checks, uri])).Check("verify");
    }
}
