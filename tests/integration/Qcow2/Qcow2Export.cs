using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>Serves one qcow2 image (its header's backing chain included) over NBD on a unix socket.</summary>
internal static class Qcow2Export
{
    /// <summary>The NBD URI of the export started by <see cref="StartAsync"/>.</summary>
    public static string Uri(TempDir dir) => $"nbd+unix:///disk?socket={dir["nbd.sock"]}";

    /// <summary>
    /// Starts the daemon on <paramref name="image"/>; <paramref name="qcow2Options"/> are extra
    /// keyval options of the qcow2 node (e.g. "snapshot.name=s1"). Discards are ignored unless
    /// <paramref name="unmap"/> (discard=unmap on both nodes), as QEMU's default is.
    /// </summary>
    public static Task<Daemon> StartAsync(TempDir dir, string image, bool writable, string qcow2Options = "", bool unmap = false)
    {
        var common = (writable ? string.Empty : ",read-only=on") + (unmap ? ",discard=unmap" : string.Empty);
        return Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}{common}",
            "--blockdev", $"driver=qcow2,node-name=q0,file=f0{common}" + (qcow2Options.Length > 0 ? "," + qcow2Options : string.Empty),
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=q0,name=disk,writable={(writable ? "on" : "off")},allocation-depth=on");
    }

    /// <summary>`qemu-img compare` of a raw file with the export; a difference fails with qemu-img's report.</summary>
    public static async Task AssertSameAsRawAsync(TempDir dir, string raw)
    {
        var cmp = await Tool.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", raw, Uri(dir));
        if (cmp.ExitCode != 0)
        {
            throw new Xunit.Sdk.XunitException($"export differs from {raw}: {cmp.Stdout}{cmp.Stderr}");
        }
    }
}
