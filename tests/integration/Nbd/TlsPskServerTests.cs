using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>The NBD server with tls-creds-psk, driven by qemu-io, qemu-img, nbdinfo and nbdcopy, with qemu-storage-daemon as the oracle where useful.</summary>
public sealed class TlsPskServerTests
{
    private static string[] ClientImage(string keysDir, int port, string priority = "") =>
    [
        "--object", TestPsk.Creds("c0", keysDir, "client") + priority,
        "--image-opts", $"driver=nbd,host=localhost,port={port},export=disk,tls-creds=c0",
    ];

    private static string[] QemuIo(string keysDir, int port, params string[] commands) =>
        [.. ClientImage(keysDir, port), .. commands.SelectMany(c => new[] { "-c", c })];

    private static string[] ServerArgs(TestPsk psk, string image, int port, string extra = "") =>
    [
        "--object", TestPsk.Creds("t0", psk.Server, "server"),
        "--blockdev", $"driver=file,node-name=f0,filename={image}",
        "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0{extra}",
        "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on",
    ];

    [Fact]
    public async Task KeyHoldersReadAndWriteWhileOthersAreRefused()
    {
        using var dir = new TempDir();
        var psk = TestPsk.Create(dir);
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 4M", "-c", "write -P 0x77 10M 1M", image)).Check("fill");
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir, ["--trace", "nbd*", .. ServerArgs(psk, image, port)]);

        // TLS 1.3 (GnuTLS's default) and TLS 1.2 (its PSK suites), both with qemu-io's PSK client.
        (await Tool.RunAsync("qemu-io", QemuIo(psk.Alice, port, "write -P 0x5a 1M 2M", "read -P 0x5a 1M 2M", "read -P 0x3c 0 1M"))).Check("qemu-io over TLS-PSK");
        Assert.Contains("TLS established (TLSv1.3, ", d.Stderr);
        (await Tool.RunAsync("qemu-io", [.. ClientImage(psk.Bob, port, ",priority=NORMAL:-VERS-TLS1.3"), "-c", "read -P 0x5a 1M 2M", "-c", "write -P 0x6b 12M 64k"]))
            .Check("qemu-io over TLS 1.2 PSK");
        Assert.Contains("TLS established (TLSv1.2, ECDHE-PSK-", d.Stderr);

        // What the export serves equals the image, through qemu-img and through libnbd.
        (await Tool.RunAsync("qemu-img", ["convert", .. ClientImage(psk.Alice, port), "-O", "raw", dir["qemu-img.raw"]])).Check("qemu-img convert over TLS-PSK");
        (await Tool.RunAsync("nbdcopy", TestPsk.Nbds(psk.Alice, port), dir["nbdcopy.raw"])).Check("nbdcopy over TLS-PSK");
        foreach (var copy in new[] { dir["qemu-img.raw"], dir["nbdcopy.raw"] })
        {
            (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", image, copy)).Check($"{copy} equals the image");
        }

        var info = (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Bob, port))).Check("nbdinfo over TLS-PSK").Stdout;
        Assert.Contains("with TLS", info);
        Assert.Contains("export-size: 16777216", info);

        // A wrong key for a known username, and a username the server does not know: refused.
        var wrongKey = await Tool.RunAsync("qemu-io", QemuIo(psk.Mallory, port, "read 0 4k"));
        Assert.NotEqual(0, wrongKey.ExitCode);
        Assert.Contains("TLS handshake failed", wrongKey.Stderr);
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Mallory, port))).ExitCode);
        Assert.NotEqual(0, (await Tool.RunAsync("qemu-io", QemuIo(psk.Carol, port, "read 0 4k"))).ExitCode);
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Carol, port))).ExitCode);

        // Plaintext: refused with NBD_REP_ERR_TLS_REQD (libnbd names that reply), never given data.
        var plain = await Tool.RunAsync("nbdinfo", "--size", $"nbd://localhost:{port}/disk");
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("server requires TLS encryption first", plain.Stderr);
        var plainQemu = await Tool.RunAsync("qemu-img", "info", "--image-opts", $"driver=nbd,host=127.0.0.1,port={port},export=disk");
        Assert.Contains("Option 0x7 not permitted before TLS", plainQemu.Stderr);

        // The daemon kept serving those who hold a key.
        (await Tool.RunAsync("qemu-io", QemuIo(psk.Alice, port, "read -P 0x5a 1M 2M", "read -P 0x6b 12M 64k"))).Check("qemu-io after the refusals");
        Assert.False(d.HasExited);
        Assert.Equal(0, await d.StopAsync());
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 2M", "-c", "read -P 0x3c 3M 1M", "-c", "read -P 0x77 10M 1M", "-c", "read -P 0x6b 12M 64k", image))
            .Check("data in the image");
    }

    /// <summary>tls-authz matches the PSK username on our server; qemu-storage-daemon does not look at it.</summary>
    [Fact]
    public async Task AuthzMatchesThePskUsername()
    {
        using var dir = new TempDir();
        var psk = TestPsk.Create(dir);
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "1M")).Check("create");
        var port = FreePort.Get();
        string[] authz = ["--object", "authz-list,id=a0,policy=deny,rules.0.match=a*,rules.0.policy=allow,rules.0.format=glob"];
        await using (var d = await Daemon.StartAsync(dir, [.. authz, .. ServerArgs(psk, image, port, ",tls-authz=a0")]))
        {
            (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Alice, port))).Check("alice is allowed");
            Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Bob, port))).ExitCode);
            Assert.NotEqual(0, (await Tool.RunAsync("qemu-io", QemuIo(psk.Bob, port, "read 0 4k"))).ExitCode);
            (await Tool.RunAsync("qemu-io", QemuIo(psk.Alice, port, "read 0 4k"))).Check("alice after bob");
            Assert.Equal(0, await d.StopAsync());
        }

        await using var q = await Daemon.StartQsdAsync(dir, [.. authz, .. ServerArgs(psk, image, port, ",tls-authz=a0")]);
        (await Tool.RunAsync("nbdinfo", TestPsk.Nbds(psk.Bob, port))).Check("qemu-storage-daemon lets bob in");
    }

    /// <summary>object-add and nbd-server-start take PSK credentials as QEMU does; credentials in use are kept.</summary>
    [Fact]
    public async Task QmpAddsPskCredentialsAndAServerUsesThem()
    {
        using var dir = new TempDir();
        var psk = TestPsk.Create(dir);
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--chardev", $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off", "--monitor", "chardev=m0",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576");
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);
        Assert.Equal(("GenericError", $"Username qemu not found in PSK file {psk.Alice}/keys.psk"),
            await c.ErrorAsync("object-add", new JsonObject { ["qom-type"] = "tls-creds-psk", ["id"] = "c0", ["dir"] = psk.Alice, ["endpoint"] = "client" }));
        await c.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "tls-creds-psk", ["id"] = "c0", ["dir"] = psk.Alice, ["endpoint"] = "client", ["username"] = "alice" });
        await c.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "tls-creds-psk", ["id"] = "t0", ["dir"] = psk.Server, ["endpoint"] = "server" });
        var unix = new JsonObject { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = sock } };
        Assert.Equal(("GenericError", "Expected TLS credentials for a server endpoint"),
            await c.ErrorAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "c0" }));
        await c.ExecuteAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "t0" });
        await c.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "n0", ["name"] = "disk" });
        Assert.Equal(("GenericError", "object 't0' is in use, can not be deleted"), await c.ErrorAsync("object-del", new JsonObject { ["id"] = "t0" }));

        var uri = $"nbds+unix://alice@/disk?socket={sock}&tls-psk-file={psk.Alice}/keys.psk";
        Assert.Contains("export-size: 1048576", (await Tool.RunAsync("nbdinfo", uri)).Check("nbdinfo over a unix socket with TLS-PSK").Stdout);

        // A server reads keys.psk for each handshake, as GnuTLS does for QEMU: a removed key no longer lets its holder in.
        await File.WriteAllTextAsync(Path.Combine(psk.Server, "keys.psk"), (await File.ReadAllLinesAsync(Path.Combine(psk.Server, "keys.psk")))[1] + "\n");
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", uri)).ExitCode);
        (await Tool.RunAsync("nbdinfo", $"nbds+unix://bob@/disk?socket={sock}&tls-psk-file={psk.Bob}/keys.psk")).Check("bob, still in the file");

        await c.ExecuteAsync("nbd-server-stop");
        await c.ExecuteAsync("object-del", new JsonObject { ["id"] = "t0" });
        await c.ExecuteAsync("object-del", new JsonObject { ["id"] = "c0" });
    }

    [Theory]
    [InlineData("tls-creds-psk,id=t0,dir=/nonexistent,endpoint=server", "Unable to access credentials /nonexistent/keys.psk: No such file or directory")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/alice,endpoint=client,username=alice,loaded=on", "Property 'tls-creds-psk.loaded' is not writable")]
    [InlineData("tls-creds-psk,id=t0,endpoint=client", "Missing 'dir' property value")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/server,endpoint=bogus", "Parameter 'endpoint' does not accept value 'bogus'")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/server,endpoint=server,username=alice", "username should not be set when endpoint=server")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/empty,endpoint=client", "Unable to access credentials @PSK@/empty/keys.psk: No such file or directory")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/server,endpoint=client", "Username qemu not found in PSK file @PSK@/server/keys.psk")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/server,endpoint=client,username=carol", "Username carol not found in PSK file @PSK@/server/keys.psk")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/bad,endpoint=client,username=odd", "Cannot set PSK client credentials: Error in parsing.")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/bad,endpoint=client,username=nothex", "Cannot set PSK client credentials: Error in parsing.")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/bad,endpoint=client,username=blank", "Cannot set PSK client credentials: The request is invalid.")]
    [InlineData("tls-creds-psk,id=t0,dir=@PSK@/folder,endpoint=client", "Cannot read PSK file @PSK@/folder/keys.psk: Error reading file “@PSK@/folder/keys.psk”: Is a directory")]
    public async Task BadObjectsAreRefusedAsByQemu(string option, string error)
    {
        using var dir = new TempDir();
        var psk = TestPsk.Create(dir);
        Directory.CreateDirectory(Path.Combine(psk.Root, "empty"));
        Directory.CreateDirectory(Path.Combine(psk.Root, "folder", "keys.psk"));
        Directory.CreateDirectory(Path.Combine(psk.Root, "bad"));
        await File.WriteAllTextAsync(Path.Combine(psk.Root, "bad", "keys.psk"), "odd:abc\nnothex:zz12\nblank:\n");
        await TlsObjectTests.BothRefuseAsync(option.Replace("@PSK@", psk.Root), error.Replace("@PSK@", psk.Root));
    }
}
