using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// nbdinfo's map of an export says what `qemu-img map` says of the image: for qcow2 runs of one status
/// that cross many L2 tables (4 KiB clusters: one L2 table per 2 MiB), and for a sparse raw file walked
/// more than once (the second walk answered from the data runs and holes the first one found), also after
/// writes into a known hole and punched holes through the export.
/// </summary>
public sealed class BlockStatusMapTests
{
    private static string Uri(TempDir dir) => $"nbd+unix:///disk?socket={dir["nbd.sock"]}";

    private static Task<Daemon> ServeAsync(TempDir dir, string format, string image) =>
        Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image},discard=unmap",
            "--blockdev", $"driver={format},node-name=n0,file=f0,discard=unmap",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk,writable=on");

    private static async Task ShAsync(string command) => (await Tool.ShAsync(command)).Check(command);

    [Fact]
    public async Task Qcow2RunsAcrossL2TablesMapAsQemuImgMapsThem()
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        // Data over three L2 tables, zeroes over three, an unallocated gap over one table and the
        // tail (no L2 tables at all) and a zeroed cluster inside data.
        await ShAsync($"qemu-img create -q -f qcow2 -o cluster_size=4096 {image} 64M && qemu-io -f qcow2 " +
            "-c 'write -P 1 1M 5M' -c 'write -z 7M 5M' -c 'write -P 2 12M 4K' -c 'write -z 3M 4K' " +
            $"-c 'write -P 3 20M 64K' {image}");
        var expected = await BlockMap.QemuImgAsync(image, "qcow2");
        Assert.Contains(expected, e => e.Value == 0 && e.Length >= 2 * 1024 * 1024);
        Assert.Contains(expected, e => e.Value == 3 && e.Length >= 5 * 1024 * 1024);

        await using var d = await ServeAsync(dir, "qcow2", image);
        Assert.Equal(expected, await BlockMap.NbdinfoAsync(Uri(dir)));
    }

    [Fact]
    public async Task SparseRawFileMapsAsQemuImgMapsItAcrossWalksAndChanges()
    {
        using var dir = new TempDir();
        var image = dir["img.raw"];
        // Data runs with plain holes between them and a hole punched into the middle of one run.
        await ShAsync($"truncate -s 256M {image} && qemu-io -f raw -c 'write -P 1 0 64K' -c 'write -P 2 3M 1M' " +
            $"-c 'write -P 3 100M 8M' -c 'write -P 4 255M 1M' {image} && fallocate --punch-hole -o 102M -l 1M {image}");

        await using var d = await ServeAsync(dir, "raw", image);
        var first = await BlockMap.NbdinfoAsync(Uri(dir));
        Assert.Equal(await BlockMap.QemuImgAsync(image, "raw"), first);
        Assert.Equal(9, first.Count);
        Assert.Equal(first, await BlockMap.NbdinfoAsync(Uri(dir)));

        // Data into a hole, a run grown at its end, and a punch inside a run the walks have seen.
        (await Tool.NbdshAsync(Uri(dir),
            "h.pwrite(b'\\x05' * 65536, 50 * 2**20); h.pwrite(b'\\x06' * 65536, 4 * 2**20); h.trim(2**20, 100 * 2**20 + 2**20)")).Check("nbdsh");
        var changed = await BlockMap.NbdinfoAsync(Uri(dir));
        Assert.Equal(await BlockMap.QemuImgAsync(image, "raw"), changed);
        Assert.NotEqual(first, changed);
        Assert.Contains(changed, e => e.Start == 50 * 1024 * 1024 && e.Length == 65536 && e.Value == 0);
        Assert.Contains(changed, e => e.Start == 3 * 1024 * 1024 && e.Length == 1024 * 1024 + 65536 && e.Value == 0);
    }
}
