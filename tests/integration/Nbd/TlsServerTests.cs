using System.Net.Sockets;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>The NBD server with tls-creds and tls-authz, driven by qemu-io, qemu-img, nbdinfo and libnbd.</summary>
public sealed class TlsServerTests
{
    private static string[] QemuIo(string credsDir, int port, params string[] commands) =>
    [
        "--object", TestPki.Creds("c0", credsDir, "client"),
        "--image-opts", $"driver=nbd,host=localhost,port={port},export=disk,tls-creds=c0",
        .. commands.SelectMany(c => new[] { "-c", c }),
    ];

    private static string Nbds(string credsDir, int port) => $"nbds://localhost:{port}/disk?tls-certificates={credsDir}";

    [Fact]
    public async Task CertifiedClientsReadAndWriteWhileOthersAreRefused()
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir,
            "--object", TestPki.Creds("t0", pki.Server, "server"),
            "--object", "authz-list,id=a0,policy=deny,rules.0.match=CN=client1.*,rules.0.policy=allow,rules.0.format=glob",
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0,tls-authz=a0",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on");

        (await Tool.RunAsync("qemu-io", QemuIo(pki.Client1, port, "write -P 0x5a 1M 3M", "read -P 0x5a 1M 3M", "read -P 0 0 1M"))).Check("qemu-io over TLS");
        var info = (await Tool.RunAsync("nbdinfo", Nbds(pki.Client1, port))).Check("nbdinfo over TLS").Stdout;
        Assert.Contains("with TLS", info);
        Assert.Contains("export-size: 16777216", info);
        (await Tool.PythonAsync($"""
            import nbd
            h = nbd.NBD()
            h.set_uri_allow_local_file(True)
            h.connect_uri("{Nbds(pki.Client1, port)}")
            assert h.get_tls_negotiated()
            h.pwrite(b'\x77' * 65536, 8 << 20)
            assert h.pread(65536, 8 << 20) == b'\x77' * 65536
            assert h.pread(4096, 1 << 20) == b'\x5a' * 4096
            h.shutdown()
            """)).Check("libnbd over TLS");

        // Plaintext: every option but STARTTLS is refused with TLS_REQD, and no data is ever given.
        var plain = await Tool.RunAsync("qemu-img", "info", "--image-opts", $"driver=nbd,host=127.0.0.1,port={port},export=disk");
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("Option 0x7 not permitted before TLS", plain.Stderr);
        var plainNbd = await Tool.NbdshAsync($"nbd://localhost:{port}/disk", "h.pread(512, 0)");
        Assert.NotEqual(0, plainNbd.ExitCode);

        // A certificate of the test CA whose name no rule allows, and one of another CA: refused.
        Assert.NotEqual(0, (await Tool.RunAsync("qemu-io", QemuIo(pki.Client2, port, "read 0 4k"))).ExitCode);
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", Nbds(pki.Client2, port))).ExitCode);
        Assert.NotEqual(0, (await Tool.RunAsync("qemu-io", QemuIo(pki.Stranger, port, "read 0 4k"))).ExitCode);

        // The daemon kept serving: the allowed client still reads what it wrote.
        (await Tool.RunAsync("qemu-io", QemuIo(pki.Client1, port, "read -P 0x5a 1M 3M", "read -P 0x77 8M 64k"))).Check("qemu-io after refusals");
        Assert.False(d.HasExited);
        Assert.Equal(0, await d.StopAsync());
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 3M", "-c", "read -P 0x77 8M 64k", "-c", "read -P 0 9M 7M", image)).Check("data in the image");
    }

    /// <summary>authz-list-file reads its rules again when the file changes; authz-simple allows one name.</summary>
    [Fact]
    public async Task AuthzListFileFollowsItsFileAndAuthzSimpleAllowsOneName()
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        var rules = dir["authz.json"];
        await File.WriteAllTextAsync(rules, $$"""{"rules": [{"match": "{{TestPki.Client2Dn}}", "policy": "allow"}], "policy": "deny"}""");
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir,
            "--chardev", $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off", "--monitor", "chardev=m0",
            "--object", TestPki.Creds("t0", pki.Server, "server"),
            "--object", $"authz-list-file,id=a0,filename={rules}",
            "--object", $"authz-simple,id=a1,identity={TestPki.Client1Dn.Replace(",", ",,")}",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0,tls-authz=a0",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");

        (await Tool.RunAsync("nbdinfo", Nbds(pki.Client2, port))).Check("client2 allowed by the file");
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", Nbds(pki.Client1, port))).ExitCode);

        await File.WriteAllTextAsync(rules, $$"""{"rules": [{"match": "CN=client1.example.com,*", "policy": "allow", "format": "glob"}], "policy": "deny"}""");
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await Tool.RunAsync("nbdinfo", Nbds(pki.Client1, port))).ExitCode != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the changed rules never took effect");
            await Task.Delay(200);
        }

        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", Nbds(pki.Client2, port))).ExitCode);

        // The server looks its authz object up for each client, as QEMU does: restarting with a1 switches to it.
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);
        await c.ExecuteAsync("nbd-server-stop");
        await c.ExecuteAsync("nbd-server-start", new JsonObject
        {
            ["addr"] = new JsonObject { ["type"] = "inet", ["data"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = port.ToString() } },
            ["tls-creds"] = "t0",
            ["tls-authz"] = "a1",
        });
        await c.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "n0", ["name"] = "disk" });
        (await Tool.RunAsync("nbdinfo", Nbds(pki.Client1, port))).Check("client1 allowed by authz-simple");
        Assert.NotEqual(0, (await Tool.RunAsync("nbdinfo", Nbds(pki.Client2, port))).ExitCode);
    }

    /// <summary>Credentials a server holds cannot be deleted; once it stops they can, and its clients are gone.</summary>
    [Fact]
    public async Task CredentialsInUseAreKeptAndAStoppedServerClosesItsClients()
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--chardev", $"socket,id=m0,path={dir["m0.sock"]},server=on,wait=off", "--monitor", "chardev=m0",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576");
        await using var c = await QmpClient.ConnectAsync(dir["m0.sock"]);
        await c.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "tls-creds-x509", ["id"] = "t0", ["dir"] = pki.Server, ["endpoint"] = "server" });
        await c.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "tls-creds-x509", ["id"] = "c0", ["dir"] = pki.Client1, ["endpoint"] = "client" });
        var unix = new JsonObject { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = sock } };
        Assert.Equal(("GenericError", "Expected TLS credentials for a server endpoint"),
            await c.ErrorAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "c0" }));
        Assert.Equal(("GenericError", "No TLS credentials with id 'zz'"),
            await c.ErrorAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "zz" }));
        await c.ExecuteAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "t0", ["handshake-max-seconds"] = 30 });
        await c.ExecuteAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "n0", ["name"] = "disk" });
        Assert.Equal(("GenericError", "object 't0' is in use, can not be deleted"), await c.ErrorAsync("object-del", new JsonObject { ["id"] = "t0" }));

        // A client still negotiating (greeting read, nothing sent) is closed when the server stops.
        using var idle = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await idle.ConnectAsync(new UnixDomainSocketEndPoint(sock));
        var buffer = new byte[256];
        Assert.Equal(18, await ReceiveAllAsync(idle, buffer, 18));
        await c.ExecuteAsync("nbd-server-stop");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await idle.ReceiveAsync(buffer, SocketFlags.None, cts.Token));

        await c.ExecuteAsync("object-del", new JsonObject { ["id"] = "t0" });
        Assert.Equal(("GenericError", "No TLS credentials with id 't0'"),
            await c.ErrorAsync("nbd-server-start", new JsonObject { ["addr"] = unix.DeepClone(), ["tls-creds"] = "t0" }));
    }

    /// <summary>
    /// A server certificate sent with its intermediate CA; with verify-peer a certificate ca-crl.pem revokes
    /// and a client without one are refused at the handshake, without verify-peer both are served.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RevokedAndMissingClientCertificatesAreRefusedWhenPeersAreVerified(bool verifyPeer)
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        var server = Path.Combine(pki.Root, "chained-server");
        var bare = Path.Combine(pki.Root, "bare-client");
        (await Tool.ShAsync($$"""
            set -e
            cd '{{pki.Root}}'
            mkdir -p '{{server}}' '{{bare}}'
            cp testca-cert.pem '{{server}}/ca-cert.pem'; cp testca-cert.pem '{{bare}}/ca-cert.pem'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout midca-key.pem -out midca.csr -subj "/CN=midca" 2>/dev/null
            printf "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n" > midca.ext
            openssl x509 -req -in midca.csr -CA testca-cert.pem -CAkey testca-key.pem -CAcreateserial -out midca-cert.pem -days 2 -extfile midca.ext 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '{{server}}/server-key.pem' -out server.csr -subj "/CN=localhost" 2>/dev/null
            printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > server.ext
            openssl x509 -req -in server.csr -CA midca-cert.pem -CAkey midca-key.pem -CAcreateserial -out '{{server}}/server-cert.pem' -days 2 -extfile server.ext 2>/dev/null
            cat midca-cert.pem >> '{{server}}/server-cert.pem'
            touch index.txt
            printf "[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\ndefault_md=sha256\ndefault_crl_days=2\n" > ca.cnf
            openssl ca -config ca.cnf -keyfile testca-key.pem -cert testca-cert.pem -revoke '{{pki.Client2}}/client-cert.pem' 2>/dev/null
            openssl ca -config ca.cnf -keyfile testca-key.pem -cert testca-cert.pem -gencrl -out '{{server}}/ca-crl.pem' 2>/dev/null
            """, TimeSpan.FromMinutes(1))).Check("make the intermediate CA, the server certificate and the CRL");
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir,
            "--object", TestPki.Creds("t0", server, "server") + $",verify-peer={(verifyPeer ? "on" : "off")}",
            // read-zeroes: without it null-co leaves a read's buffer as it was, as in QEMU, and the read below checks for zeroes.
            "--blockdev", "driver=null-co,node-name=n0,size=1048576,read-zeroes=on",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");

        // The clients trust the root CA only: the server's chain reaches it through the intermediate it sends.
        Assert.Equal("1048576", (await Tool.RunAsync("nbdinfo", "--size", Nbds(pki.Client1, port))).Check("nbdinfo, client1").Stdout.Trim());
        (await Tool.RunAsync("qemu-io", ["-r", .. QemuIo(pki.Client1, port, "read -P 0 0 64k")])).Check("qemu-io, client1");
        foreach (var client in new[] { pki.Client2, bare })
        {
            var info = await Tool.RunAsync("nbdinfo", "--size", Nbds(client, port));
            Assert.True(verifyPeer == (info.ExitCode != 0), $"{client}: {info.Stdout}{info.Stderr}");
        }

        Assert.False(d.HasExited);
    }

    /// <summary>handshake-max-seconds closes a client that never finishes negotiating; one that does is served.</summary>
    [Fact]
    public async Task HandshakeDeadlineClosesSilentClients()
    {
        using var dir = new TempDir();
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=unix,addr.path={sock},handshake-max-seconds=1",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");
        using var idle = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await idle.ConnectAsync(new UnixDomainSocketEndPoint(sock));
        var buffer = new byte[256];
        Assert.Equal(18, await ReceiveAllAsync(idle, buffer, 18));
        var started = DateTime.UtcNow;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await idle.ReceiveAsync(buffer, SocketFlags.None, cts.Token));
        Assert.InRange((DateTime.UtcNow - started).TotalSeconds, 0.5, 5);
        (await Tool.RunAsync("nbdinfo", $"nbd+unix:///disk?socket={sock}")).Check("a prompt client");
    }

    /// <summary>addr.keep-alive=on sets SO_KEEPALIVE on each accepted connection (the kernel shows a keepalive timer); off leaves none.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ListenerKeepAliveReachesAcceptedConnections(bool keepAlive)
    {
        using var dir = new TempDir();
        var port = FreePort.Get();
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},addr.keep-alive={(keepAlive ? "on" : "off")}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
        Assert.Equal(18, await ReceiveAllAsync(client, new byte[18], 18));
        var ss = (await Tool.RunAsync("ss", "-tnoH", "state", "established", "sport", "=", $":{port}")).Check("ss").Stdout;
        Assert.Contains($"127.0.0.1:{port}", ss);
        Assert.Equal(keepAlive, ss.Contains("keepalive", StringComparison.Ordinal));
    }

    private static async Task<int> ReceiveAllAsync(Socket socket, byte[] buffer, int count)
    {
        var got = 0;
        while (got < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(got, count - got), SocketFlags.None);
            if (n == 0)
            {
                break;
            }

            got += n;
        }

        return got;
    }
}
