using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// Live migration over TLS: daemon B exports an empty image on a TLS NBD server, daemon A mirrors its
/// disk into it through an nbd node with tls-creds while a client writes to A; with
/// qemu-storage-daemon on either side.
/// </summary>
public sealed class TlsMigrationTests
{
    public static TheoryData<bool, bool> Pairs => new()
    {
        { false, true },
        { true, false },
        { false, false },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public async Task MirrorToARemoteTlsExportWhileWriting(bool sourceIsQsd, bool targetIsQsd)
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        await MirrorOverTlsAsync(dir, sourceIsQsd, targetIsQsd, TestPki.Creds("t0", pki.Server, "server"), TestPki.Creds("c0", pki.Client1, "client"));
    }

    /// <summary>The same with tls-creds-psk; a key other than the server's is refused first, and the source keeps running.</summary>
    [Theory]
    [MemberData(nameof(Pairs))]
    public async Task MirrorToARemotePskExportWhileWriting(bool sourceIsQsd, bool targetIsQsd)
    {
        using var dir = new TempDir();
        var psk = TestPsk.Create(dir);
        await MirrorOverTlsAsync(dir, sourceIsQsd, targetIsQsd, TestPsk.Creds("t0", psk.Server, "server"), TestPsk.Creds("c0", psk.Alice, "client"),
            TestPsk.Creds("w0", psk.Mallory, "client"));
    }

    private static async Task MirrorOverTlsAsync(TempDir dir, bool sourceIsQsd, bool targetIsQsd, string serverCreds, string clientCreds, string? wrongCreds = null)
    {
        var (src, dst) = await MigrationImages.CreateAsync(dir, "full");
        var port = FreePort.Get();

        string[] targetArgs =
        [
            "--chardev", $"socket,id=m0,path={dir["b.qmp"]},server=on,wait=off", "--monitor", "chardev=m0",
            "--object", serverCreds,
            "--blockdev", $"driver=file,node-name=f0,filename={dst}",
            "--blockdev", "driver=qcow2,node-name=target,file=f0",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0",
            "--export", "type=nbd,id=e0,node-name=target,name=target,writable=on",
        ];
        await using var b = targetIsQsd ? await Daemon.StartQsdAsync(dir, targetArgs) : await Daemon.StartAsync(dir, targetArgs);
        await using var bQmp = await QmpClient.ConnectAsync(dir["b.qmp"]);
        await using var a = await StartAsync(dir, "a", sourceIsQsd, ["--object", clientCreds, .. wrongCreds is null ? Array.Empty<string>() : ["--object", wrongCreds]]);
        await a.AddImageAsync("disk", src);
        await a.ExportAsync("disk");

        // Without credentials the target refuses the node; with them it opens.
        var (_, plainError) = await a.Qmp.ErrorAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "nbd", ["node-name"] = "plain", ["export"] = "target",
            ["server"] = new JsonObject { ["type"] = "inet", ["host"] = "127.0.0.1", ["port"] = port.ToString() },
        });
        Assert.Contains(sourceIsQsd ? "TLS negotiation required before option 7" : "Option 0x7 not permitted before TLS", plainError);
        if (wrongCreds is not null)
        {
            var (_, wrongError) = await a.Qmp.ErrorAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = "wrong", ["export"] = "target", ["tls-creds"] = "w0",
                ["server"] = new JsonObject { ["type"] = "inet", ["host"] = "127.0.0.1", ["port"] = port.ToString() },
            });
            Assert.Contains(sourceIsQsd ? "TLS" : "TLS handshake failed", wrongError);
        }

        await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "target", ["tls-creds"] = "c0", ["tls-hostname"] = "localhost",
            ["server"] = new JsonObject { ["type"] = "inet", ["host"] = "127.0.0.1", ["port"] = port.ToString() },
        });
        if (!sourceIsQsd)
        {
            // Ours keeps the credentials for reconnections; QEMU 7.2 lets them go.
            Assert.Equal(("GenericError", "object 'c0' is in use, can not be deleted"), await a.Qmp.ErrorAsync("object-del", new JsonObject { ["id"] = "c0" }));
        }

        await MigrationImages.MirrorWhileWritingAsync(a, "full");
        await a.Qmp.ExecuteAsync("quit");
        await bQmp.ExecuteAsync("quit");
        await a.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await b.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(src, dst);
        await QemuIoAsync(dst, "qcow2", "read -P 0x66 12M 100k", "read -P 0x5b 31M 1M");
        (await Tool.RunAsync("qemu-img", "check", dst)).Check("check");
    }

    /// <summary>A server whose certificate comes from another CA, or names another host, is refused by the nbd node.</summary>
    [Fact]
    public async Task UntrustedServersAreRefused()
    {
        using var dir = new TempDir();
        var pki = await TestPki.CreateAsync(dir);
        var port = FreePort.Get();
        await using var b = await Daemon.StartQsdAsync(dir,
            "--object", TestPki.Creds("t0", pki.StrangeServer, "server") + ",verify-peer=off",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port},tls-creds=t0",
            "--export", "type=nbd,id=e0,node-name=n0,name=x");
        var port2 = FreePort.Get();
        await using var c = await Daemon.StartQsdAsync(dir,
            "--object", TestPki.Creds("t0", pki.Server, "server") + ",verify-peer=off",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=inet,addr.host=127.0.0.1,addr.port={port2},tls-creds=t0",
            "--export", "type=nbd,id=e0,node-name=n0,name=x");
        string Node(int p, string host) =>
            $"driver=nbd,node-name=r,read-only=on,server.type=inet,server.host=127.0.0.1,server.port={p},export=x,tls-creds=c0,tls-hostname={host}";
        var creds = TestPki.Creds("c0", pki.Client1, "client");

        var wrongCa = await Tool.RunAsync(Daemon.ExportServerPath, ["--object", creds, "--blockdev", Node(port, "localhost")], TimeSpan.FromSeconds(30));
        Assert.Equal(1, wrongCa.ExitCode);
        Assert.Contains("TLS handshake failed", wrongCa.Stderr);
        var wrongName = await Tool.RunAsync(Daemon.ExportServerPath, ["--object", creds, "--blockdev", Node(port2, "elsewhere.example.com")], TimeSpan.FromSeconds(30));
        Assert.Equal(1, wrongName.ExitCode);
        Assert.Contains("TLS handshake failed", wrongName.Stderr);
        var serverCreds = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--object", TestPki.Creds("c0", pki.Server, "server"), "--blockdev", Node(port2, "localhost")], TimeSpan.FromSeconds(30));
        Assert.Equal(1, serverCreds.ExitCode);
        Assert.EndsWith("Expected TLS credentials for a client endpoint", serverCreds.Stderr.TrimEnd());

        await using var ok = await Daemon.StartAsync(dir, "--object", creds, "--blockdev", Node(port2, "localhost"),
            "--nbd-server", $"addr.type=unix,addr.path={dir["ok.sock"]}", "--export", "type=nbd,id=e,node-name=r,name=r");
        (await Tool.RunAsync("nbdinfo", $"nbd+unix:///r?socket={dir["ok.sock"]}")).Check("the trusted server through our node");
    }
}
