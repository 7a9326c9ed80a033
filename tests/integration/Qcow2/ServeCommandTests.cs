using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>`export-server serve IMAGE` probes the format; a probed raw image is served read-only.</summary>
public sealed class ServeCommandTests
{
    private static string Uri(TempDir dir, string name) => $"nbd+unix:///{name}?socket={dir["s.sock"]}";

    [Fact]
    public async Task Qcow2IsProbedAndServedWritable()
    {
        using var dir = new TempDir();
        var image = dir["disk.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "100M")).Check("create");
        await using (var d = await Daemon.StartAsync(dir, "serve", image, "--socket", dir["s.sock"]))
        {
            var info = JsonDocument.Parse((await Tool.RunAsync("/usr/bin/nbdinfo", "--json", Uri(dir, "disk"))).Check("nbdinfo").Stdout).RootElement;
            var export = info.GetProperty("exports")[0];
            Assert.Equal(100L << 20, export.GetProperty("export-size").GetInt64());
            Assert.False(export.GetProperty("is_read_only").GetBoolean());
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 300K", Uri(dir, "disk"))).Check("write");
            Assert.DoesNotContain("WARNING", d.Stderr);
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x5a 1M 300K", "-c", "read -P 0 0 1M", image)).Check("read");
    }

    [Fact]
    public async Task ProbedRawIsServedReadOnlyWithAWarning()
    {
        using var dir = new TempDir();
        var image = dir["disk.img"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "4M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x33 0 4K", image)).Check("fill");
        await using var d = await Daemon.StartAsync(dir, "serve", image, "--socket", dir["s.sock"]);
        var write = await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x51 0 512", Uri(dir, "disk"));
        Assert.NotEqual(0, write.ExitCode);
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x33 0 4K", Uri(dir, "disk"))).Check("read");
        Assert.Contains("probing guessed raw", d.Stderr);
        Assert.Contains("read-only", d.Stderr);
        Assert.Equal(0x33, (await File.ReadAllBytesAsync(image))[0]);
    }

    [Fact]
    public async Task ExplicitRawIsServedWritable()
    {
        using var dir = new TempDir();
        var image = dir["disk.img"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "4M")).Check("create");
        await using var d = await Daemon.StartAsync(dir, "serve", image, "--format", "raw", "--socket", dir["s.sock"]);
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x51 0 512", Uri(dir, "disk"))).Check("write");
        Assert.DoesNotContain("WARNING", d.Stderr);
        Assert.Equal(0x51, (await File.ReadAllBytesAsync(image))[0]);
    }

    /// <summary>The first line the daemon printed on stdout (it prints before it reports ready, but pipes lag).</summary>
    private static async Task<string> FirstLineAsync(Daemon d)
    {
        for (var i = 0; i < 1000 && !d.Stdout.Contains('\n'); i++)
        {
            await Task.Delay(10);
        }

        return d.Stdout.Split('\n')[0];
    }

    [Fact]
    public async Task PrintsTheUriToConnectTo()
    {
        using var dir = new TempDir();
        var image = dir["my disk.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "1M")).Check("create");
        await using (var d = await Daemon.StartAsync(dir, "serve", image, "--socket", dir["s.sock"]))
        {
            var uri = $"nbd+unix:///my%20disk?socket={dir["s.sock"]}";
            Assert.Equal(uri, await FirstLineAsync(d));
            (await Tool.RunAsync("/usr/bin/nbdinfo", "--size", uri)).Check("nbdinfo by the printed unix URI");
        }

        var port = FreePort.Get();
        await using (var d = await Daemon.StartAsync(dir, "serve", image, "--port", port.ToString(), "--name", "x"))
        {
            var uri = $"nbd://127.0.0.1:{port}/x";
            Assert.Equal(uri, await FirstLineAsync(d));
            Assert.Equal("1048576", (await Tool.RunAsync("/usr/bin/nbdinfo", "--size", uri)).Check("nbdinfo by the printed tcp URI").Stdout.Trim());
        }
    }

    [Fact]
    public async Task AMissingImageIsReportedInQemusWords()
    {
        using var dir = new TempDir();
        var d = Daemon.Launch(Daemon.ExportServerPath, ["serve", "nonexist.qcow2", "--socket", dir["s.sock"]]);
        Assert.Equal(1, await d.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("export-server: serve: Could not open 'nonexist.qcow2': No such file or directory", d.Stderr.Trim());
        await d.DisposeAsync();
    }
}
