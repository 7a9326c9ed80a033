using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>How QMP lines are written: compact, with quotes and non-ASCII text left readable as QEMU writes them.</summary>
internal static class QmpJson
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Write(JsonNode node) => node.ToJsonString(Options);
}
