using ExportServer.IntegrationTests.Qcow2;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Vmdk;

/// <summary>Serves one image through the vmdk driver (its parent chain included) over NBD on a unix socket.</summary>
internal static class VmdkExport
{
    public static string Uri(TempDir dir) => Qcow2Export.Uri(dir);

    public static Task<Daemon> StartAsync(TempDir dir, string image, bool writable, string format = "vmdk", string discard = "ignore")
    {
        var mode = writable ? string.Empty : ",read-only=on";
        return Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}{mode}",
            "--blockdev", $"driver={format},node-name=v0,file=f0,discard={discard}{mode}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=v0,name=disk,writable={(writable ? "on" : "off")}");
    }

    public static Task AssertSameAsRawAsync(TempDir dir, string raw) => Qcow2Export.AssertSameAsRawAsync(dir, raw);

    public static async Task ShAsync(TempDir dir, string command) =>
        (await Tool.ShAsync($"cd '{dir.Path}' && {command}")).Check(command);

    /// <summary>qemu-io with one -c per command, on an image of <paramref name="format"/>.</summary>
    public static string Io(string format, string image, IEnumerable<string> commands) =>
        $"qemu-io -f {format} {string.Join(' ', commands.Select(c => $"-c '{c}'"))} '{image}'";
}
