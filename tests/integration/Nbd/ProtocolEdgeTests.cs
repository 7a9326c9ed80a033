using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>Protocol edges driven through python3-libnbd: structured replies, block status, error replies.</summary>
public sealed class ProtocolEdgeTests
{
    /// <summary>export-server, or with <paramref name="qsd"/> qemu-storage-daemon, serving rw, ro and depth (allocation-depth=on).</summary>
    private static async Task<(TempDir Dir, Daemon Daemon)> StartAsync(bool qsd = false)
    {
        var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "16M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 1M", image)).Check("qemu-io");
        var d = await (qsd ? Daemon.StartQsdAsync : (Func<TempDir, string[], Task<Daemon>>)Daemon.StartAsync)(dir,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=raw,node-name=rw,file=f0",
            "--blockdev", "driver=raw,node-name=ro,file=f0,read-only=on",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=rw,name=rw,writable=on",
            "--export", "type=nbd,id=e1,node-name=ro,name=ro",
            "--export", "type=nbd,id=e2,node-name=ro,name=depth,allocation-depth=on",
        ]);
        return (dir, d);
    }

    /// <summary>Runs a python3-libnbd script with h connected to export <paramref name="name"/>; prints "OK" at the end.</summary>
    private static async Task RunAsync(TempDir dir, string name, string body)
    {
        var script = $$"""
            import nbd, errno, sys
            h = nbd.NBD()
            h.set_strict_mode(0)
            h.add_meta_context("base:allocation")
            h.connect_uri("nbd+unix:///{{name}}?socket={{dir["s.sock"]}}")
            def expect_err(code, f, *a):
                try:
                    f(*a)
                except nbd.Error as e:
                    assert e.errno in (code, errno.errorcode[code]), f"{f.__name__}: expected {errno.errorcode[code]}, got {e.errno} {e}"
                    return
                raise AssertionError(f"{f.__name__} succeeded, expected {errno.errorcode[code]}")
            {{body}}
            h.shutdown()
            print("OK")
            """;
        var r = await Tool.PythonAsync(script);
        Assert.True(r.ExitCode == 0 && r.Stdout.Contains("OK"), r.Stderr + r.Stdout);
    }

    [Fact]
    public async Task StructuredRepliesAndBlockStatus()
    {
        var (dir, d) = await StartAsync();
        await using (d)
        using (dir)
        {
            await RunAsync(dir, "rw", """
                assert h.get_structured_replies_negotiated()
                assert h.can_meta_context("base:allocation")
                ext = []
                def cb(meta, offset, entries, err):
                    ext.extend(entries)
                h.block_status(16 << 20, 0, cb)
                pos, spans = 0, []
                for i in range(0, len(ext), 2):
                    spans.append((pos, pos + ext[i], ext[i + 1])); pos += ext[i]
                assert pos == 16 << 20, ext
                # 1-2 MiB was written: data; 2-16 MiB never was: hole and zero.
                assert all(f == 0 for (s, e, f) in spans if s < 2 << 20 and e > 1 << 20), spans
                assert all(f == 3 for (s, e, f) in spans if s >= 2 << 20), spans
                ext.clear()
                h.block_status(16 << 20, 0, cb, nbd.CMD_FLAG_REQ_ONE)
                assert len(ext) == 2, ext
                buf = h.pread(2 << 20, 512 << 10)
                assert buf[:512 << 10] == b"\0" * (512 << 10)
                assert buf[512 << 10:1536 << 10] == b"\x5a" * (1 << 20)
                assert buf[1536 << 10:] == b"\0" * (512 << 10)
                assert h.pread(4096, 1 << 20, nbd.CMD_FLAG_DF) == b"\x5a" * 4096
                """);
        }
    }

    [Fact]
    public async Task ErrorRepliesKeepTheConnectionUsable()
    {
        var (dir, d) = await StartAsync();
        await using (d)
        using (dir)
        {
            await RunAsync(dir, "rw", """
                size = h.get_size()
                expect_err(errno.EINVAL, h.pread, 512, size - 100)
                expect_err(errno.ENOSPC, h.pwrite, b"x" * 512, size - 100)
                expect_err(errno.ENOSPC, h.zero, 4096, size)
                expect_err(errno.ENOSPC, h.trim, 4096, size)
                expect_err(errno.EOVERFLOW, h.pread, 33 << 20, 0)
                expect_err(errno.EINVAL, h.pread, 512, 0, nbd.CMD_FLAG_FUA << 8)
                h.pwrite(b"\x77" * 4096, 0, nbd.CMD_FLAG_FUA)
                h.zero(4096, 4096, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
                h.flush()
                h.cache(4096, 0)
                assert h.pread(4096, 0) == b"\x77" * 4096
                """);
        }
    }

    /// <summary>As in QEMU 7.2: empty requests succeed without touching the node; an empty BLOCK_STATUS is EINVAL.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ZeroLengthRequestsAreNoOps(bool qsd)
    {
        var (dir, d) = await StartAsync(qsd);
        await using (d)
        using (dir)
        {
            await RunAsync(dir, "rw", """
                size = h.get_size()
                for off in (0, 4096, size):
                    assert h.pread(0, off) == b""
                    assert h.pread(0, off, nbd.CMD_FLAG_DF) == b""
                    h.pwrite(b"", off)
                    h.pwrite(b"", off, nbd.CMD_FLAG_FUA)
                    h.trim(0, off)
                    h.zero(0, off)
                    h.zero(0, off, nbd.CMD_FLAG_NO_HOLE)
                    h.cache(0, off)
                expect_err(errno.EINVAL, h.block_status, 0, 0, lambda *a: 0)
                expect_err(errno.EINVAL, h.pread, 0, size + 1)
                assert h.pread(4096, 1 << 20) == b"\x5a" * 4096
                """);
            await RunAsync(dir, "ro", """
                assert h.pread(0, 0) == b""
                h.cache(0, 0)
                """);
        }
    }

    /// <summary>"qemu:allocation-depth" is offered only by an export created with allocation-depth=on, as in QEMU.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AllocationDepthOnlyWhereTheExportAsksForIt(bool qsd)
    {
        var (dir, d) = await StartAsync(qsd);
        await using (d)
        using (dir)
        {
            foreach (var (name, offered) in new[] { ("ro", "False"), ("depth", "True") })
            {
                var r = await Tool.PythonAsync($$"""
                    import nbd
                    h = nbd.NBD()
                    h.set_opt_mode(True)
                    h.connect_uri("nbd+unix:///{{name}}?socket={{dir["s.sock"]}}")
                    listed = []
                    h.add_meta_context("qemu:")
                    h.opt_list_meta_context(lambda n: listed.append(n))
                    h.clear_meta_contexts()
                    h.add_meta_context("qemu:allocation-depth")
                    h.opt_go()
                    print(h.can_meta_context("qemu:allocation-depth"), listed)
                    """);
                Assert.Equal($"{offered} {(offered == "True" ? "['qemu:allocation-depth']" : "[]")}", r.Check("libnbd").Stdout.Trim());
            }
        }
    }

    [Fact]
    public async Task ReadOnlyExportRefusesChangesWithEperm()
    {
        var (dir, d) = await StartAsync();
        await using (d)
        using (dir)
        {
            await RunAsync(dir, "ro", """
                assert h.is_read_only()
                expect_err(errno.EPERM, h.pwrite, b"x" * 512, 0)
                expect_err(errno.EPERM, h.zero, 512, 0)
                expect_err(errno.EPERM, h.trim, 512, 0)
                assert h.pread(512, 1 << 20) == b"\x5a" * 512
                """);
        }
    }

    [Fact]
    public async Task UnknownExportNameIsRefused()
    {
        var (dir, d) = await StartAsync();
        await using (d)
        using (dir)
        {
            var r = await Tool.PythonAsync($$"""
                import nbd
                h = nbd.NBD()
                try:
                    h.connect_uri("nbd+unix:///nosuch?socket={{dir["s.sock"]}}")
                    print("connected")
                except nbd.Error as e:
                    print("refused:", e)
                """);
            Assert.Contains("refused", r.Stdout);
            Assert.Contains("server has no export named 'nosuch'", r.Stdout);
            Assert.False(d.HasExited);
        }
    }
}
