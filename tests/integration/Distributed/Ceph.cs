using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Distributed;

/// <summary>
/// The one-node Ceph cluster scripts/test starts (scripts/ceph-up) and names through
/// EXPORT_SERVER_CEPH_CONF. Without it the tests fail: they need a cluster and say how to get one.
/// Every test makes images of its own names in the pool "rbd".
/// </summary>
internal static class Ceph
{
    public const string Pool = "rbd";

    public static string Conf =>
        Environment.GetEnvironmentVariable("EXPORT_SERVER_CEPH_CONF") is { Length: > 0 } conf
            ? conf
            : throw new InvalidOperationException(
                "EXPORT_SERVER_CEPH_CONF is not set: run the tests through scripts/test, or start a cluster with " +
                "'scripts/ceph-up DIR' and set EXPORT_SERVER_CEPH_CONF=DIR/ceph.conf");

    /// <summary>A fresh image name, unique across tests and runs.</summary>
    public static string NewImage(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>qemu-img's file name for <paramref name="image"/>.</summary>
    public static string FileName(string image) => $"rbd:{Pool}/{image}:conf={Conf}";

    /// <summary>BlockdevOptionsRbd of <paramref name="image"/> (without driver and node name).</summary>
    public static JsonObject Options(string image) => new() { ["pool"] = Pool, ["image"] = image, ["conf"] = Conf };

    /// <summary>blockdev-add options of an rbd node.</summary>
    public static JsonObject Node(string nodeName, string image)
    {
        var o = Options(image);
        o["driver"] = "rbd";
        o["node-name"] = nodeName;
        return o;
    }

    /// <summary>--blockdev keyval of an rbd node.</summary>
    public static string Keyval(string nodeName, string image) => $"driver=rbd,node-name={nodeName},pool={Pool},image={image},conf={Conf}";

    public static async Task RbdAsync(params string[] args) => (await Tool.RunAsync("rbd", ["-c", Conf, .. args])).Check("rbd " + string.Join(' ', args));

    /// <summary>The directory scripts/ceph-up made: the configuration file's own, which names its pid files and its OSD's data.</summary>
    public static string Dir => Path.GetDirectoryName(Conf)!;

    /// <summary>Stops the OSD, then the monitor (SIGTERM), and waits until they are gone; the OSD writes its memstore out as it stops.</summary>
    public static async Task StopAsync()
    {
        await ClusterDaemons.StopAsync(Directory.GetFiles(Path.Combine(Dir, "run"), "osd.*.pid"));
        await ClusterDaemons.StopAsync([Path.Combine(Dir, "run", "mon.a.pid")]);
    }

    /// <summary>Starts the monitor and the OSD again as scripts/ceph-up does.</summary>
    public static async Task StartAsync()
    {
        (await Tool.RunAsync("ceph-mon", "-c", Conf, "-i", "a")).Check("ceph-mon");
        var osd = File.ReadAllText(Path.Combine(Dir, "osd", "whoami")).Trim();
        (await Tool.RunAsync("ceph-osd", "-c", Conf, "-i", osd)).Check("ceph-osd");
    }

    /// <summary>client.admin's key, as the keyring holds it (base64).</summary>
    public static string AdminKey()
    {
        var keyring = File.ReadAllLines(Path.Combine(Path.GetDirectoryName(Conf)!, "keyring"));
        var section = Array.IndexOf(keyring, "[client.admin]");
        return keyring.Skip(section + 1).First(l => l.Trim().StartsWith("key = ", StringComparison.Ordinal)).Trim()["key = ".Length..];
    }
}
