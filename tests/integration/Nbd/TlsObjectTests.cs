using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>Bad tls-creds-x509 and authz objects are refused at startup with qemu-storage-daemon's words.</summary>
public sealed class TlsObjectTests
{
    [Theory]
    [InlineData("tls-creds-x509,id=t0,dir=/nonexistent,endpoint=server", "Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory")]
    [InlineData("tls-creds-x509,id=t0,endpoint=server", "Missing 'dir' property value")]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/server,endpoint=bogus", "Parameter 'endpoint' does not accept value 'bogus'")]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/server,endpoint=server,verify-peer=maybe", "Parameter 'verify-peer' expects 'on' or 'off'")]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/client1,endpoint=server", "Unable to access credentials @PKI@/client1/server-cert.pem: No such file or directory")]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/server,endpoint=server,passwordid=nosuch", "No secret with id 'nosuch'")]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/server,endpoint=server,loaded=on", "Property 'tls-creds-x509.loaded' is not writable")]
    [InlineData("authz-simple,id=a0", "Parameter 'identity' is missing")]
    [InlineData("authz-list,id=a0,policy=bogus", "Parameter 'policy' does not accept value 'bogus'")]
    [InlineData("authz-list,id=a0,rules.0.policy=allow", "Parameter 'rules.0.match' is missing")]
    public async Task BadObjectsAreRefusedAsByQemu(string option, string error)
    {
        using var dir = new TempDir();
        await TestPki.CreateAsync(dir);
        await BothRefuseAsync(option.Replace("@PKI@", dir["pki"]), error.Replace("@PKI@", dir["pki"]));
    }

    /// <summary>Ours and qemu-storage-daemon both exit at start with <paramref name="error"/> for <c>--object <paramref name="option"/></c>.</summary>
    internal static async Task BothRefuseAsync(string option, string error)
    {
        foreach (var exe in new[] { Daemon.ExportServerPath, "/usr/bin/qemu-storage-daemon" })
        {
            var r = await Tool.RunAsync(exe, ["--object", option], TimeSpan.FromSeconds(30));
            Assert.Equal(1, r.ExitCode);
            Assert.EndsWith($": --object {option}: {error}", r.Stderr.TrimEnd());
        }
    }

    [Theory]
    [InlineData("tls-creds-x509,id=t0,dir=@PKI@/server,endpoint=server,priority=NORMAL:-VERS-ALL", "TLS priority 'NORMAL:-VERS-ALL' is not supported: only the default priorities (NORMAL, @SYSTEM) are")]
    [InlineData("authz-list-file,id=a0", "filename not provided")]
    [InlineData("authz-list-file,id=a0,filename=/nonexistent.json", "Unable to read '/nonexistent.json': Failed to open file “/nonexistent.json”: No such file or directory")]
    [InlineData("authz-list,id=a0,rules.0.match=x,rules.0.policy=allow,rules.0.format=regex", "Parameter 'rules.0.format' does not accept value 'regex'")]
    public async Task OptionsBeyondQemu72AreCheckedToo(string option, string error)
    {
        using var dir = new TempDir();
        await TestPki.CreateAsync(dir);
        option = option.Replace("@PKI@", dir["pki"]);
        var r = await Tool.RunAsync(Daemon.ExportServerPath, ["--object", option], TimeSpan.FromSeconds(30));
        Assert.Equal(1, r.ExitCode);
        Assert.EndsWith($": --object {option}: {error}", r.Stderr.TrimEnd());
    }
}
