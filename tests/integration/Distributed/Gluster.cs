using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Distributed;

/// <summary>
/// The one-brick GlusterFS volume "gv0" scripts/test starts (scripts/gluster-up) and names through
/// EXPORT_SERVER_GLUSTER_HOST. Without it the tests fail. Every test makes files of its own names.
/// </summary>
internal static class Gluster
{
    public const string Volume = "gv0";

    public static string Host =>
        Environment.GetEnvironmentVariable("EXPORT_SERVER_GLUSTER_HOST") is { Length: > 0 } host
            ? host
            : throw new InvalidOperationException(
                "EXPORT_SERVER_GLUSTER_HOST is not set: run the tests through scripts/test, or start a volume with " +
                "'scripts/gluster-up DIR' and set EXPORT_SERVER_GLUSTER_HOST to the address it prints");

    public static string NewFile(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)] + ".img";

    /// <summary>qemu-img's file name for <paramref name="path"/> on the volume.</summary>
    public static string Uri(string path) => $"gluster://{Host}/{Volume}/{path}";

    /// <summary>blockdev-add options of a gluster node.</summary>
    public static JsonObject Node(string nodeName, string path, string volume = Volume) => new()
    {
        ["driver"] = "gluster",
        ["node-name"] = nodeName,
        ["volume"] = volume,
        ["path"] = path,
        ["server"] = new JsonArray(new JsonObject { ["type"] = "inet", ["host"] = Host, ["port"] = "24007" }),
    };

    /// <summary>The directory scripts/gluster-up made (EXPORT_SERVER_GLUSTER_DIR), for the tests that stop and restart the volume.</summary>
    public static string Dir =>
        Environment.GetEnvironmentVariable("EXPORT_SERVER_GLUSTER_DIR") is { Length: > 0 } dir
            ? dir
            : throw new InvalidOperationException(
                "EXPORT_SERVER_GLUSTER_DIR is not set: run the tests through scripts/test, or set it to the DIR given to scripts/gluster-up");

    /// <summary>Stops glusterd and the brick (SIGTERM) and waits until they are gone.</summary>
    public static Task StopAsync() =>
        ClusterDaemons.StopAsync(Directory.GetFiles(Path.Combine(Dir, "run"), "*.pid", SearchOption.AllDirectories));

    /// <summary>Starts glusterd again as scripts/gluster-up does, and the volume's brick with it.</summary>
    public static async Task StartAsync()
    {
        var dir = Dir;
        (await Tool.RunAsync("glusterd", "-f", Path.Combine(dir, "glusterd.vol"), "-p", Path.Combine(dir, "run", "glusterd.pid"),
            "-l", Path.Combine(dir, "log", "glusterd.log"))).Check("glusterd");
        (await Tool.RunAsync("gluster", $"--glusterd-sock={Path.Combine(dir, "run", "glusterd.socket")}", "--mode=script",
            "volume", "start", Volume, "force")).Check("gluster volume start");
    }
}
