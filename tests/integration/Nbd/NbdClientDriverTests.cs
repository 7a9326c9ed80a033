using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>The nbd block driver: our daemon as a client of qemu-storage-daemon's NBD export.</summary>
public sealed class NbdClientDriverTests
{
    [Fact]
    public async Task RemoteExportOfQemuIsServedAgainAndWritesReachIt()
    {
        using var dir = new TempDir();
        var image = dir["remote.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "64M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 3M", "-c", "write -P 0x22 40M 1M", image)).Check("fill");
        var flat = dir["flat.raw"];
        (await Tool.RunAsync("qemu-img", "convert", "-O", "raw", image, flat)).Check("convert");

        await using var remote = await Daemon.StartQsdAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["q.sock"]}",
            "--export", "type=nbd,id=e0,node-name=q0,name=src,writable=on");
        await using (var proxy = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=nbd,node-name=remote,server.type=unix,server.path={dir["q.sock"]},export=src",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e1,node-name=remote,name=proxy,writable=on"))
        {
            var uri = $"nbd+unix:///proxy?socket={dir["s.sock"]}";
            (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", uri, flat)).Check("compare through the proxy");
            var map = (await Tool.RunAsync("nbdinfo", "--map", uri)).Check("map").Stdout;
            Assert.Contains("hole,zero", map);
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x33 10M 128k", "-c", "write -z 0 64k", "-c", "flush", uri)).Check("write through");
            Assert.Equal(0, await proxy.StopAsync());
        }

        Assert.Equal(0, await remote.StopAsync());
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x33 10M 128k", "-c", "read -P 0 0 64k", "-c", "read -P 0x21 64k 1M", image)).Check("data in the remote image");
        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
    }

    [Fact]
    public async Task UnreachableServerIsAClearStartupError()
    {
        using var dir = new TempDir();
        var r = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--blockdev", $"driver=nbd,node-name=remote,server.type=unix,server.path={dir["none.sock"]},export=x"], TimeSpan.FromSeconds(30));
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("export-server: --blockdev driver=nbd", r.Stderr);
    }

    /// <summary>ipv4 and ipv6 of a server address are checked and leave an address family, as QEMU's; both binaries print the same error.</summary>
    [Theory]
    [InlineData("server.host=127.0.0.1,server.ipv4=off,server.ipv6=off", "Cannot disable IPv4 and IPv6 at same time")]
    [InlineData("server.host=::1,server.ipv4=on", "address resolution failed for ::1:1: Address family for hostname not supported")]
    [InlineData("server.host=::1,server.ipv6=off", "address resolution failed for ::1:1: Address family for hostname not supported")]
    public async Task AddressFamiliesAreCheckedAsInQemu(string address, string error)
    {
        foreach (var exe in new[] { Daemon.ExportServerPath, "/usr/bin/qemu-storage-daemon" })
        {
            var option = $"driver=nbd,node-name=n,server.type=inet,server.port=1,{address},export=x";
            var r = await Tool.RunAsync(exe, ["--blockdev", option], TimeSpan.FromSeconds(30));
            Assert.Equal(1, r.ExitCode);
            Assert.EndsWith($": --blockdev {option}: {error}", r.Stderr.TrimEnd());
        }
    }

    /// <summary>keep-alive=on sets SO_KEEPALIVE on the client's connection (the kernel then shows a keepalive timer); without it there is none.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task KeepAliveIsSetOnTheConnectionOnlyWhenAsked(bool keepAlive)
    {
        using var dir = new TempDir();
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", dir["r.raw"], "1M")).Check("create");
        var port = FreePort.Get();
        await using var server = await Daemon.StartQsdAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["r.raw"]}",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
            "--export", "type=nbd,id=e0,node-name=f0,name=x");
        await using var client = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=nbd,node-name=n,server.type=inet,server.host=127.0.0.1,server.port={port},server.keep-alive={(keepAlive ? "on" : "off")},export=x,read-only=on");
        var ss = (await Tool.RunAsync("ss", "-tnoH", "state", "established", "dport", "=", $":{port}")).Check("ss").Stdout;
        Assert.Contains($"127.0.0.1]:{port}", ss);
        Assert.Equal(keepAlive, ss.Contains("keepalive", StringComparison.Ordinal));
    }

    /// <summary>A read-only export opened read-write is refused with QEMU's words; with auto-read-only it opens read-only.</summary>
    [Fact]
    public async Task AReadOnlyExportOpensOnlyReadOnlyAsInQemu()
    {
        using var dir = new TempDir();
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", dir["r.raw"], "1M")).Check("create");
        await using var server = await Daemon.StartQsdAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["r.raw"]}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["q.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=ro");
        var seen = new List<string>();
        foreach (var qsd in new[] { true, false })
        {
            await using var d = await JobDaemon.StartAsync(dir, qsd ? "qsd" : "es", qsd);
            JsonObject Nbd(string name, bool auto) => new()
            {
                ["driver"] = "nbd", ["node-name"] = name, ["export"] = "ro", ["auto-read-only"] = auto,
                ["server"] = new JsonObject { ["type"] = "unix", ["path"] = dir["q.sock"] },
            };
            var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", Nbd("rw", false));
            seen.Add($"{cls}: {desc}");
            await d.Qmp.ExecuteAsync("blockdev-add", Nbd("auto", true));
            var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
            seen.Add(string.Join(",", nodes.Select(n => $"{n!["node-name"]} ro={n["ro"]}")));
        }

        Assert.Equal(seen[0], seen[2]);
        Assert.Equal(seen[1], seen[3]);
        Assert.Equal("GenericError: Could not open image: Permission denied", seen[0]);
    }

    /// <summary>
    /// qemu-nbd without -e allows one client and does not advertise multi-conn: the node opens one
    /// connection by default, and multi-conn=2 is refused with the reason; the daemon stays up.
    /// </summary>
    [Fact]
    public async Task MultiConnIsRefusedByAServerThatDoesNotAllowIt()
    {
        using var dir = new TempDir();
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", dir["r.raw"], "1M")).Check("create");
        await using var nbd = Daemon.Launch("/usr/bin/qemu-nbd", ["-f", "raw", "-k", dir["n.sock"], "-x", "x", "--persistent", dir["r.raw"]]);
        for (var i = 0; i < 300 && !File.Exists(dir["n.sock"]); i++)
        {
            await Task.Delay(10);
        }

        await using var daemon = await JobDaemon.StartAsync(dir, "a");
        JsonObject Node(string name, int? multiConn)
        {
            var o = new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = name, ["export"] = "x",
                ["server"] = new JsonObject { ["type"] = "unix", ["path"] = dir["n.sock"] },
            };
            if (multiConn is { } n)
            {
                o["multi-conn"] = n;
            }

            return o;
        }

        Assert.Equal(
            ("GenericError", "Parameter 'multi-conn': the NBD server does not allow more than one connection to export 'x' (no NBD_FLAG_CAN_MULTI_CONN)"),
            await daemon.Qmp.ErrorAsync("blockdev-add", Node("two", 2)));
        await daemon.Qmp.ExecuteAsync("blockdev-add", Node("one", null));
        await daemon.Qmp.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e", ["node-name"] = "one", ["name"] = "one", ["writable"] = true });
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x17 0 64k", "-c", "read -P 0x17 0 64k", daemon.NbdUri("one"))).Check("through the one connection");
    }
}
