using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Http;

/// <summary>The read-only http and https drivers against a local range-capable server, plain and TLS.</summary>
public sealed class HttpDriverTests
{
    private static async Task<(string Raw, string Qcow2)> MakeImagesAsync(TempDir dir, string root)
    {
        Directory.CreateDirectory(root);
        var raw = Path.Combine(root, "disk.raw");
        (await Tool.ShAsync($"head -c 5M /dev/urandom > {raw}; truncate -s 7M {raw}")).Check("raw");
        var qcow2 = Path.Combine(root, "disk.qcow2");
        (await Tool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "32M")).Check("qcow2");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 3M", "-c", "write -P 0x42 20M 1M", "-c", "write -z 1M 64k", qcow2)).Check("fill");
        return (raw, qcow2);
    }

    private static async Task CompareServedAsync(TempDir dir, string url, string raw, string qcow2, string extra, string[]? objects = null, params string[] env)
    {
        var sock = dir[$"nbd-{Guid.NewGuid():N}.sock"];
        await using var d = await Daemon.StartAsync("/usr/bin/env", dir,
        [
            .. env, Daemon.ExportServerPath, .. objects ?? [],
            "--blockdev", $"driver={url[..url.IndexOf(':')]},node-name=h0,url={url}disk.raw,read-only=on{extra}",
            "--blockdev", $"driver=qcow2,node-name=q0,read-only=on,file.driver={url[..url.IndexOf(':')]},file.url={url}disk.qcow2{extra.Replace(",", ",file.", StringComparison.Ordinal)}",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=h0,name=raw",
            "--export", "type=nbd,id=e1,node-name=q0,name=qcow2",
        ]);
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", $"nbd+unix:///raw?socket={sock}", raw)).Check("raw over " + url);
        (await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "qcow2", $"nbd+unix:///qcow2?socket={sock}", qcow2)).Check("qcow2 over " + url);
        var copy = dir[$"copy-{Guid.NewGuid():N}.raw"];
        (await Tool.RunAsync("nbdcopy", "--requests=16", $"nbd+unix:///raw?socket={sock}", copy)).Check("nbdcopy");
        Assert.Equal(await File.ReadAllBytesAsync(raw), await File.ReadAllBytesAsync(copy));
        Assert.Equal(0, await d.StopAsync());
    }

    [Fact]
    public async Task RawAndQcow2OverHttpEqualTheFilesAsQemusCurlDriverReadsThem()
    {
        using var dir = new TempDir();
        var (raw, qcow2) = await MakeImagesAsync(dir, dir["www"]);
        await using var server = await RangeServer.StartAsync(dir, dir["www"]);
        await CompareServedAsync(dir, server.Url, raw, qcow2, ",readahead=64k,timeout=10");
        (await Tool.RunAsync("qemu-img", "compare", "-F", "raw", $"json:{{\"driver\":\"raw\",\"file\":{{\"driver\":\"http\",\"url\":\"{server.Url}disk.raw\"}}}}", raw)).Check("qemu's curl driver agrees");
    }

    [Fact]
    public async Task HttpsWithATestCaComparesEqualAndAnUnknownCaIsRefusedUnlessSslverifyIsOff()
    {
        using var dir = new TempDir();
        var (raw, qcow2) = await MakeImagesAsync(dir, dir["www"]);
        var (ca, cert, key) = await RangeServer.MakeCertificatesAsync(dir);
        await using var server = await RangeServer.StartAsync(dir, dir["www"], tls: (cert, key));
        await CompareServedAsync(dir, server.Url, raw, qcow2, ",timeout=60", null, $"SSL_CERT_FILE={ca}");
        await CompareServedAsync(dir, server.Url, raw, qcow2, ",sslverify=off,timeout=60");

        var r = await Tool.RunAsync(Daemon.ExportServerPath, ["--blockdev", $"driver=https,node-name=h,read-only=on,url={server.Url}disk.raw"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("CURL: Error opening file: ", r.Stderr);
    }

    /// <summary>The error after "PROGRAM: --blockdev OPTION: " (qemu-storage-daemon also prints GLib warnings under that prefix).</summary>
    private static string ErrorOf(string stderr, string option)
    {
        var marker = $": --blockdev {option}: ";
        var line = stderr.Split('\n').Last(l => l.Contains(marker, StringComparison.Ordinal) && !l.Contains(": GLib: ", StringComparison.Ordinal));
        return line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].Trim();
    }

    /// <summary>Both binaries refuse a server that ignores ranges, a writable node and a bad URL with the same words.</summary>
    [Fact]
    public async Task ServerWithoutRangesWritesAndBadOptionsAreRefusedAsQemuRefusesThem()
    {
        using var dir = new TempDir();
        await MakeImagesAsync(dir, dir["www"]);
        await using var server = await RangeServer.StartAsync(dir, dir["www"], ranges: false);
        string[] cases =
        [
            $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw",
            $"driver=http,node-name=h,url={server.Url}disk.raw",
            $"driver=http,node-name=h,read-only=on,url=ftp://x/y",
            $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw,readahead=1000",
            $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw,timeout=-1",
            $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw,cookie=a=b,cookie-secret=s",
        ];
        foreach (var option in cases)
        {
            var ours = await Tool.RunAsync(Daemon.ExportServerPath, ["--blockdev", option], TimeSpan.FromSeconds(60));
            var qemu = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", ["--blockdev", option], TimeSpan.FromSeconds(60));
            Assert.Equal(1, ours.ExitCode);
            Assert.Equal(1, qemu.ExitCode);
            Assert.Equal(ErrorOf(qemu.Stderr, option), ErrorOf(ours.Stderr, option));
        }
    }

    /// <summary>
    /// A server that wants a cookie gets it from cookie or from cookie-secret; one that wants Basic
    /// credentials gets username and password-secret; without them, or with wrong ones, the open is
    /// refused with the HTTP status, and the secret's value appears in no message.
    /// </summary>
    [Fact]
    public async Task CookiesAndCredentialsReachTheServer()
    {
        using var dir = new TempDir();
        var (raw, qcow2) = await MakeImagesAsync(dir, dir["www"]);
        string[] secrets =
        [
            "--object", "secret,id=c0,data=session=s3cr3t-cookie",
            "--object", "secret,id=p0,data=pa55-word",
            "--object", "secret,id=bad,data=wrong-word",
        ];
        await using (var server = await RangeServer.StartAsync(dir, dir["www"], require: new() { ["Cookie"] = "session=s3cr3t-cookie" }))
        {
            await CompareServedAsync(dir, server.Url, raw, qcow2, ",cookie=session=s3cr3t-cookie");
            await CompareServedAsync(dir, server.Url, raw, qcow2, ",cookie-secret=c0", secrets);
            var none = await Tool.RunAsync(Daemon.ExportServerPath, ["--blockdev", $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw"], TimeSpan.FromSeconds(60));
            Assert.Equal(1, none.ExitCode);
            Assert.EndsWith("The requested URL returned error: 403", none.Stderr.TrimEnd());
        }

        await using (var server = await RangeServer.StartAsync(dir, dir["www"], require: new() { ["Authorization"] = RangeServer.Basic("alice", "pa55-word") }))
        {
            await CompareServedAsync(dir, server.Url, raw, qcow2, ",username=alice,password-secret=p0", secrets);
            var wrong = await Tool.RunAsync(Daemon.ExportServerPath,
                [.. secrets, "--blockdev", $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw,username=alice,password-secret=bad"], TimeSpan.FromSeconds(60));
            Assert.Equal(1, wrong.ExitCode);
            Assert.EndsWith("The requested URL returned error: 401", wrong.Stderr.TrimEnd());
            Assert.DoesNotContain("wrong-word", wrong.Stderr);
        }
    }

    /// <summary>The proxy that http_proxy names is used, with proxy-username and proxy-password-secret; without them it refuses (407).</summary>
    [Fact]
    public async Task AProxyWithCredentialsIsUsed()
    {
        using var dir = new TempDir();
        var (raw, qcow2) = await MakeImagesAsync(dir, dir["www"]);
        await using var server = await RangeServer.StartAsync(dir, dir["www"]);
        await using var proxy = await RangeServer.StartProxyAsync(dir, "bob", "pr0xy");
        var env = new[] { $"http_proxy={proxy.Url}", "no_proxy=" };
        await CompareServedAsync(dir, server.Url, raw, qcow2, ",proxy-username=bob,proxy-password-secret=x0", ["--object", "secret,id=x0,data=pr0xy"], env);
        Assert.True(proxy.Forwarded > 0);

        var refused = await Tool.RunAsync("/usr/bin/env", [.. env, Daemon.ExportServerPath, "--blockdev", $"driver=http,node-name=h,read-only=on,url={server.Url}disk.raw"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, refused.ExitCode);
        Assert.EndsWith("The requested URL returned error: 407", refused.Stderr.TrimEnd());
    }

    /// <summary>The web server goes away under a reader: the NBD client gets EIO and the daemon keeps serving its other export.</summary>
    [Fact]
    public async Task ADroppedServerIsEioAndTheDaemonStaysUp()
    {
        using var dir = new TempDir();
        var (raw, _) = await MakeImagesAsync(dir, dir["www"]);
        var server = await RangeServer.StartAsync(dir, dir["www"]);
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=http,node-name=h0,url={server.Url}disk.raw,read-only=on,timeout=5",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=h0,name=raw",
            "--export", "type=nbd,id=e1,node-name=n0,name=null");
        var uri = $"nbd+unix:///raw?socket={sock}";
        (await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 0 64k", uri)).Check("read while the server is up");
        await server.DisposeAsync();

        var after = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 6M 64k", uri);
        Assert.Contains("Input/output error", after.Stdout + after.Stderr);
        Assert.False(d.HasExited);
        (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///null?socket={sock}")).Check("the other export still serves");
    }
}
