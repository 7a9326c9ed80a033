using System.Text.Json.Nodes;

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
}
