using System.Text.Json;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// Images of other hypervisors' formats (vpc, vdi, vhdx) made and checked with qemu-img and qemu-io,
/// and served by our daemon over NBD on a unix socket.
/// </summary>
internal static class ForeignImage
{
    /// <summary>Writes within and across blocks (1, 2 and 8 MiB), unaligned, zeroes over data and near the end of a 64 MiB disk.</summary>
    public static readonly string[] Writes =
    [
        "write -P 0x11 0 1M", "write -P 0x22 3146240 100000", "write -z 512K 128K", "write -P 0x33 8M 256K",
        "write -P 0x44 20M 3M", "write -z 21M 4096", "write -P 0x55 67100672 8192",
    ];

    /// <summary>Later writes over the first ones: in place in allocated blocks, and partial sectors.</summary>
    public static readonly string[] Overwrites =
    [
        "write -P 0x66 1000 5000", "write -P 0x77 22M 1M", "write -z 0 4096", "write -P 0x88 40M 64K",
    ];

    public const string Size = "64M";

    /// <summary>Each foreign format with the qemu-img create options worth covering: subformats, block and cluster sizes.</summary>
    public static TheoryData<string, string> Variants => new()
    {
        { "vpc", "" },
        { "vpc", "subformat=fixed" },
        { "vpc", "force_size=on" },
        { "vdi", "" },
        { "vdi", "static=on" },
        { "vhdx", "" },
        { "vhdx", "subformat=fixed" },
        { "vhdx", "block_size=1M,log_size=2M,block_state_zero=off" },
        { "qed", "" },
        { "qed", "cluster_size=4096,table_size=2" },
        { "parallels", "" },
        { "parallels", "cluster_size=64K" },
    };

    public static string Uri(TempDir dir) => $"nbd+unix:///disk?socket={dir["nbd.sock"]}";

    public static async Task ShAsync(TempDir dir, string command) =>
        (await Tool.ShAsync($"cd '{dir.Path}' && {command}")).Check(command);

    public static string Io(string format, string image, IEnumerable<string> commands) =>
        $"qemu-io -f {format} {string.Join(' ', commands.Select(c => $"-c '{c}'"))} '{image}' >/dev/null";

    /// <summary>qemu-img's "-o" argument, or nothing.</summary>
    public static string OptionArg(string options) => options.Length > 0 ? $"-o {options}" : string.Empty;

    /// <summary>Serves <paramref name="image"/> as a <paramref name="format"/> node named n0 (export "disk").</summary>
    public static Task<Daemon> ServeAsync(TempDir dir, string format, string image, bool writable)
    {
        var ro = writable ? string.Empty : ",read-only=on";
        return Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}{ro}",
            "--blockdev", $"driver={format},node-name=n0,file=f0{ro}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=n0,name=disk,writable={(writable ? "on" : "off")}");
    }

    /// <summary>The virtual size qemu-img gives <paramref name="image"/> opened as <paramref name="format"/> (a fixed VHD is not probed).</summary>
    public static async Task<long> VirtualSizeAsync(string image, string format) =>
        JsonDocument.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "-f", format, "--output=json", image)).Check("info").Stdout)
            .RootElement.GetProperty("virtual-size").GetInt64();

    public static async Task<long> ExportSizeAsync(string uri) =>
        JsonDocument.Parse((await Tool.RunAsync("/usr/bin/nbdinfo", "--json", uri)).Check("nbdinfo").Stdout)
            .RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64();

    /// <summary>qemu-img compare of a raw file with <paramref name="other"/>; a difference fails with its report.</summary>
    public static async Task AssertSameAsync(string raw, string other, string format = "raw")
    {
        var cmp = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", format, raw, other);
        if (cmp.ExitCode != 0)
        {
            throw new Xunit.Sdk.XunitException($"{other} differs from {raw}: {cmp.Stdout}{cmp.Stderr}");
        }
    }

    /// <summary>qemu-img check finds no corruption (or the format has no check, as vpc).</summary>
    public static async Task AssertCheckCleanAsync(string image, string format)
    {
        var r = await Tool.RunAsync("qemu-img", "check", "-U", "-f", format, image);
        if (r.ExitCode != 0 && !r.Stderr.Contains("does not support checks", StringComparison.Ordinal))
        {
            throw new Xunit.Sdk.XunitException($"qemu-img check {image}: {r.ExitCode}\n{r.Stdout}{r.Stderr}");
        }
    }
}
