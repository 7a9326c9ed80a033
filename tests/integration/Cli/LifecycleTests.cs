using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Cli;

/// <summary>Start-up, readiness, signals, daemonizing and iothreads of the real process.</summary>
public sealed class LifecycleTests
{
    private static async Task<string> RawImageAsync(TempDir dir, string size = "64M")
    {
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, size)).Check("create");
        return image;
    }

    /// <summary>
    /// The daemon is linked at a fixed address, so the dynamic loader has next to nothing to relocate
    /// before main: as a position-independent executable it applied some 170,000 relocations at every
    /// start (see src/Server/Server.csproj).
    /// </summary>
    [Fact]
    public async Task TheDaemonIsLinkedAtAFixedAddressWithFewRelocations()
    {
        var header = new byte[18];
        await using (var f = File.OpenRead(Daemon.ExportServerPath))
        {
            await f.ReadExactlyAsync(header);
        }

        Assert.Equal("\u007fELF", System.Text.Encoding.ASCII.GetString(header, 0, 4));
        const ushort executable = 2, sharedObject = 3;
        var type = BitConverter.ToUInt16(header, 16);
        Assert.True(type == executable, $"ELF type {type} ({(type == sharedObject ? "position-independent" : "unknown")}); a build with EXPORT_SERVER_PIE=1 makes one");

        var dynamic = (await Tool.RunAsync("readelf", "-d", "-W", Daemon.ExportServerPath)).Check("readelf");
        var size = dynamic.Stdout.Split('\n').Where(l => l.Contains("(RELASZ)", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2])).Sum();
        Assert.True(size < 24 * 1000, $"{size / 24} dynamic relocations:\n{dynamic.Stdout}");
    }

    [Fact]
    public async Task PidfileMarksReadinessAndIsRemovedOnSigterm()
    {
        using var dir = new TempDir();
        var image = await RawImageAsync(dir);
        var pidfile = dir["d.pid"];
        var d = Daemon.Launch(Daemon.ExportServerPath,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on",
            "--pidfile", pidfile,
        ]);
        await using (d)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(pidfile) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10);
            }

            // Once the pidfile exists the export answers: no retry needed.
            (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///disk?socket={dir["s.sock"]}")).Check("nbdinfo");
            Assert.Equal(d.Pid.ToString(), (await File.ReadAllTextAsync(pidfile)).Trim());

            Assert.Equal(0, await d.StopAsync());
            Assert.False(File.Exists(pidfile));
            Assert.False(File.Exists(dir["s.sock"]));
        }
    }

    [Theory]
    [InlineData(15)]
    [InlineData(2)]
    public async Task SignalFinishesInFlightWritesFlushesAndExitsZero(int signal)
    {
        using var dir = new TempDir();
        var image = await RawImageAsync(dir, "256M");
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on");

        // A writer whose writes are acknowledged before the signal must find them on disk afterwards.
        var writer = Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 128M", "-c", "flush",
            $"nbd+unix:///disk?socket={dir["s.sock"]}");
        (await writer).Check("writer");
        d.Signal(signal);
        Assert.Equal(0, await d.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x61 0 128M", image)).Check("data on disk");
    }

    /// <summary>
    /// A daemon started with SIGINT ignored (every background job of a non-interactive shell is) still
    /// quits on SIGINT, as qemu-storage-daemon does: a script that starts it with '&amp;' and stops it
    /// with kill -INT works with either.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SigintQuitsADaemonStartedWithSigintIgnored(bool qsd)
    {
        // The same start, of a program that shows what it inherited: SIGINT (bit 1) is ignored.
        var shown = (await Tool.RunAsync("/bin/sh", "-c", "trap '' INT; exec grep SigIgn: /proc/self/status")).Check("sh");
        Assert.True((Convert.ToUInt64(shown.Stdout["SigIgn:".Length..].Trim(), 16) & 0b10) != 0, shown.Stdout);

        using var dir = new TempDir();
        var image = await RawImageAsync(dir);
        var exe = qsd ? "/usr/bin/qemu-storage-daemon" : Daemon.ExportServerPath;
        await using var d = await Daemon.StartAsync("/bin/sh", dir,
        [
            "-c", "trap '' INT; exec \"$0\" \"$@\"", exe,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk",
        ]);
        d.Signal(2);
        Assert.Equal(0, await d.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task DaemonizeReturnsOnceListening()
    {
        using var dir = new TempDir();
        var image = await RawImageAsync(dir);
        var pidfile = dir["d.pid"];
        var r = await Tool.RunAsync(Daemon.ExportServerPath,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk",
            "--pidfile", pidfile, "--daemonize",
        ], TimeSpan.FromSeconds(30));
        Assert.Equal(0, r.ExitCode);
        var pid = int.Parse((await File.ReadAllTextAsync(pidfile)).Trim());
        try
        {
            (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///disk?socket={dir["s.sock"]}")).Check("nbdinfo");
        }
        finally
        {
            (await Tool.RunAsync("/bin/kill", "-15", pid.ToString())).Check("kill");
        }

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (File.Exists(pidfile) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.False(File.Exists(pidfile));
    }

    [Fact]
    public async Task DaemonizeReportsStartupErrorsAndFails()
    {
        var r = await Tool.RunAsync(Daemon.ExportServerPath,
            ["--blockdev", "driver=file,node-name=f,filename=/nonexistent/x", "--daemonize"], TimeSpan.FromSeconds(30));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("Could not open '/nonexistent/x': No such file or directory", r.Stderr);
    }

    [Fact]
    public async Task IoThreadExportSurvivesClientsDisconnecting()
    {
        using var dir = new TempDir();
        var image = await RawImageAsync(dir);
        await using var d = await Daemon.StartAsync(dir,
            "--object", "iothread,id=io0",
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on,iothread=io0");
        var uri = $"nbd+unix:///disk?socket={dir["s.sock"]}";

        // fio's nbd engine disconnects with requests in flight; qemu-storage-daemon 7.2 dies on this with an iothread.
        for (var i = 0; i < 3; i++)
        {
            (await Tool.RunAsync("fio", "--name=t", "--ioengine=nbd", $"--uri={uri}", "--rw=randwrite", "--bs=4k",
                "--iodepth=32", "--size=64M", "--time_based", "--runtime=1")).Check("fio");
        }

        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x17 0 1M", "-c", "read -P 0x17 0 1M", uri)).Check("qemu-io");
        Assert.False(d.HasExited);
    }

    [Fact]
    public async Task MaxConnectionsHoldsTheExtraClientUntilASlotFrees()
    {
        using var dir = new TempDir();
        var image = await RawImageAsync(dir);
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]},max-connections=1",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk");
        var r = await Tool.PythonAsync($$"""
            import nbd, threading, time
            uri = "nbd+unix:///disk?socket={{dir["s.sock"]}}"
            a = nbd.NBD(); a.connect_uri(uri)
            done = []
            def second():
                b = nbd.NBD(); b.connect_uri(uri); b.pread(512, 0); done.append(time.monotonic()); b.shutdown()
            t = threading.Thread(target=second); t.start()
            time.sleep(0.5)
            assert not done, "second client served while the first held the only slot"
            a.pread(512, 0)
            a.shutdown()
            t.join(10)
            assert done, "second client never served"
            print("OK")
            """);
        Assert.True(r.Stdout.Contains("OK"), r.Stdout + r.Stderr);
    }
}
