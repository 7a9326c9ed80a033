using System.Text.Json.Nodes;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>blockdev options for driver=nbd, as QMP would send them.</summary>
internal static class NbdTestOptions
{
    public static JsonObject Unix(string socketPath, string export, params (string Key, JsonNode Value)[] extra)
    {
        var o = new JsonObject
        {
            ["driver"] = "nbd",
            ["server"] = new JsonObject { ["type"] = "unix", ["path"] = socketPath },
            ["export"] = export,
        };
        foreach (var (key, value) in extra)
        {
            o[key] = value;
        }

        return o;
    }
}
