using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Write-behind over NBD: a client that has not flushed leaves its writes dirty in the page cache, as
/// other servers do; after its first flush, the file's filled 32 MiB windows are written back while
/// it streams. Dirty pages are counted with cachestat(2) on the image file.
/// </summary>
public sealed class WriteBehindTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task WritesBehindOnlyAfterTheClientsFirstFlush()
    {
        using var dir = new TempDir();
        var image = dir["img.raw"];
        var source = dir["src.raw"];
        (await Tool.ShAsync($"truncate -s 256M {image} && head -c 96M /dev/urandom > {source}")).Check("images");
        var uri = $"nbd+unix:///disk?socket={dir["nbd.sock"]}";
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=raw,node-name=n0,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk,writable=on");

        // Three windows copied in without a flush stay dirty (the kernel's own writeback waits 30 s).
        (await Tool.RunAsync("nbdcopy", source, uri)).Check("nbdcopy");
        await Task.Delay(1000);
        var dirty = await DirtyPagesAsync(image, 0, 96 * MiB);
        Assert.True(dirty >= 96 * MiB / 4096 * 9 / 10, $"{dirty} of {96 * MiB / 4096} pages dirty without a flush");

        // After a flush, three windows written in 1 MiB requests are written back while they stream.
        (await Tool.NbdshAsync(uri,
            "import os\nh.flush()\nfor i in range(96): h.pwrite(os.urandom(2**20), (128 + i) * 2**20)")).Check("nbdsh");
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while ((dirty = await DirtyPagesAsync(image, 128 * MiB, 96 * MiB)) > 96 * MiB / 4096 / 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        Assert.True(dirty <= 96 * MiB / 4096 / 3, $"{dirty} of {96 * MiB / 4096} pages still dirty after the flush armed write-behind");
    }

    /// <summary>Pages of the range that are dirty in the page cache, by cachestat(2) (syscall 451 on x86-64).</summary>
    private static async Task<long> DirtyPagesAsync(string path, long offset, long length)
    {
        var r = await Tool.PythonAsync(
            "import ctypes, os\n" +
            "libc = ctypes.CDLL(None, use_errno=True)\n" +
            $"fd = os.open('{path}', os.O_RDONLY)\n" +
            $"rng = (ctypes.c_uint64 * 2)({offset}, {length}); st = (ctypes.c_uint64 * 5)()\n" +
            "libc.syscall.restype = ctypes.c_long\n" +
            "if libc.syscall(ctypes.c_long(451), fd, rng, st, 0) != 0: raise OSError(ctypes.get_errno(), 'cachestat')\n" +
            "print(st[1])");
        r.Check("cachestat");
        return long.Parse(r.Stdout.Trim());
    }
}
