using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Cli;

/// <summary>
/// Bad command lines: ours must fail before serving anything, exit non-zero and print the same
/// message qemu-storage-daemon prints for the same arguments (with our program name).
/// </summary>
public sealed class CommandLineErrorTests
{
    public static TheoryData<string[]> Cases => new()
    {
        new[] { "--blockdev", "driver=file,node-name=f" },
        new[] { "--blockdev", "driver=file,filename=/etc/hostname" },
        new[] { "--blockdev", "driver=file,node-name=f,filename=/etc/hostname,foo=1" },
        new[] { "--blockdev", "driver=filex,node-name=f,filename=/etc/hostname" },
        new[] { "--blockdev", "driver=raw,node-name=r,file.driver=file,file.filename=/etc/hostname,read-only=maybe" },
        new[] { "--blockdev", "driver=null-co,node-name=n,size=abc" },
        new[] { "--blockdev", "driver=null-co,node-name=n,size=1k2" },
        new[] { "--blockdev", "driver=null-co,node-name=1n" },
        new[] { "--blockdev", "driver=null-co,node-name=n,,x=1" },
        new[] { "--blockdev", "driver=null-co,node-name=n,size=1G,size.x=2" },
        new[] { "--blockdev", "driver=null-co,node-name=n", "--blockdev", "driver=null-co,node-name=n" },
        new[] { "--blockdev", "driver=file,node-name=f,filename=/nonexistent/disk.img" },
        new[] { "--blockdev", "{\"driver\":\"file\"" },
        new[] { "--blockdev", "{\"driver\":\"null-co\"}" },
        new[] { "--export", "type=nbd,id=e,node-name=x" },
        new[] { "--blockdev", "driver=null-co,node-name=n", "--export", "type=nbd,id=e,node-name=n" },
        new[] { "--blockdev", "driver=null-co,node-name=n", "--export", "type=nbd,node-name=n" },
        new[] { "--nbd-server", "addr.type=inet,addr.host=127.0.0.1" },
        new[] { "--nbd-server", "addr.type=unix" },
        new[] { "--nbd-server", "addr.type=foo" },
        new[] { "--nbd-server", "addr.type=inet,addr.host=127.0.0.1,addr.port=abc" },
        new[] { "--object", "iothread" },
        new[] { "--object", "foo,id=x" },
        new[] { "--object", "secret,id=s" },
        new[] { "--object", "secret,id=s,data=a,file=/etc/hostname" },
        new[] { "--object", "secret,id=s,file=/nonexistent/key" },
        new[] { "--object", "secret,id=s,data=@@@,format=base64" },
        new[] { "--object", "secret,id=s,data=abc,format=hex" },
        new[] { "--object", "secret,id=s,data=abc,foo=1" },
        new[] { "--object", "secret,id=s,data=abc,loaded=off" },
        new[] { "--object", "secret,id=s,data=abc,keyid=k" },
        new[] { "--object", "secret,id=k,data=abc", "--object", "secret,id=s,data=abc,keyid=k,iv=AAAA" },
        new[] { "--object", "secret,id=k,data=0123456789abcdef0123456789abcdef", "--object", "secret,id=s,data=abc,keyid=k" },
        new[] { "--object", "secret,id=k,data=0123456789abcdef0123456789abcdef", "--object", "secret,id=s,data=abc,keyid=k,iv=AAAA" },
        new[] { "--object", "secret,id=k,data=0123456789abcdef0123456789abcdef", "--object", "secret,id=s,data=abcdabcdabcdabcd,keyid=k,iv=AAAAAAAAAAAAAAAAAAAAAA==" },
        new[] { "--object", "secret,id=s,data=a", "--object", "secret,id=s,data=b" },
        new[] { "--monitor", "c" },
        new[] { "--foo" },
        new[] { "--blockdev" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task SameErrorAsQemuStorageDaemon(string[] args)
    {
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        var theirs = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", args, TimeSpan.FromSeconds(30));

        Assert.NotEqual(0, theirs.ExitCode);
        Assert.NotEqual(0, ours.ExitCode);
        // getopt's messages start with argv[0], QEMU's own with the program name.
        var expected = theirs.Stderr
            .Replace("/usr/bin/qemu-storage-daemon:", Daemon.ExportServerPath + ":", StringComparison.Ordinal)
            .Replace("qemu-storage-daemon:", "export-server:", StringComparison.Ordinal).Trim();
        if (expected.Contains("JSON parse error", StringComparison.Ordinal))
        {
            // The parser's own detail differs; the prefix and the kind of error must not.
            Assert.StartsWith(expected[..(expected.IndexOf("JSON parse error", StringComparison.Ordinal) + 16)], ours.Stderr.Trim());
        }
        else
        {
            Assert.Equal(expected, ours.Stderr.Trim());
        }
    }

    [Fact]
    public async Task RuntimeErrorsAreReportedLikeQemu()
    {
        using var dir = new TempDir();
        string[] args =
        [
            "--blockdev", "driver=null-co,node-name=n,read-only=on",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e,node-name=n,writable=on",
        ];
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("export-server: --export type=nbd,id=e,node-name=n,writable=on: Cannot export read-only node as writable", ours.Stderr.Trim());
    }

    [Fact]
    public async Task HelpAndVersionExitZero()
    {
        var help = await Tool.RunAsync(Daemon.ExportServerPath, "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--blockdev", help.Stdout);
        Assert.Contains("--nbd-server", help.Stdout);
        var version = await Tool.RunAsync(Daemon.ExportServerPath, "-V");
        Assert.Equal(0, version.ExitCode);
        Assert.Contains("export-server version", version.Stdout);
    }
}
