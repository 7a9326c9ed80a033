using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>
/// Damaged qcow2 images make the daemon exit 1 before it serves anything, with a message naming
/// the file and the field at fault — never a hang, a crash or an attempt to allocate the damage.
/// </summary>
public sealed class CorruptImageTests
{
    /// <summary>Overwrites big-endian bytes of the header in place.</summary>
    private static async Task PatchAsync(string path, int offset, params byte[] bytes)
    {
        await using var f = File.Open(path, FileMode.Open);
        f.Position = offset;
        await f.WriteAsync(bytes);
    }

    [Theory]
    [InlineData("truncated-header", "header truncated (50 bytes, at least 72 needed)")]
    [InlineData("l1-past-eof", "l1_table_offset 0x100000000 (+8 bytes) beyond end of file")]
    [InlineData("huge-size", "size 4611686018427387904 too large")]
    [InlineData("huge-l1", "l1_size 268435456 too large")]
    [InlineData("refcount-table-past-eof", "refcount_table_offset 0x10000000000 (+65536 bytes) beyond end of file")]
    [InlineData("backing-loop", "backing file loop")]
    public async Task DamagedImageIsRefusedBeforeServing(string damage, string message)
    {
        using var dir = new TempDir();
        var image = dir["img.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", image, "16M")).Check("create");
        switch (damage)
        {
            case "truncated-header":
                File.WriteAllBytes(image, File.ReadAllBytes(image)[..50]);
                break;
            case "l1-past-eof":
                await PatchAsync(image, 40, 0, 0, 0, 1, 0, 0, 0, 0);
                break;
            case "huge-size":
                await PatchAsync(image, 24, 0x40, 0, 0, 0, 0, 0, 0, 0);
                break;
            case "huge-l1":
                await PatchAsync(image, 36, 0x10, 0, 0, 0);
                break;
            case "refcount-table-past-eof":
                await PatchAsync(image, 48, 0, 0, 1, 0, 0, 0, 0, 0);
                break;
            case "backing-loop":
                File.Delete(image);
                (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", dir["other.qcow2"], "-F", "qcow2", image, "16M")).Check("create");
                (await Tool.RunAsync("qemu-img", "create", "-f", "qcow2", "-u", "-b", image, "-F", "qcow2", dir["other.qcow2"], "16M")).Check("create");
                break;
        }

        await using var d = Daemon.Launch(Daemon.ExportServerPath,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=q0,name=disk",
        ]);
        Assert.Equal(1, await d.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains(message, d.Stderr);
        Assert.Contains("img.qcow2", d.Stderr);
        Assert.False(File.Exists(dir["nbd.sock"]));
    }
}
