using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Qmp;

/// <summary>A command's answer: a return value or an error, the request's id, and what to do once it is sent.</summary>
internal sealed record QmpReply(JsonNode? Id, JsonNode? Return, QmpErrorBody? Error, Action? AfterReply = null)
{
    public static QmpReply Fail(JsonNode? id, string errorClass, string desc) => new(id, null, new QmpErrorBody(errorClass, desc));

    /// <summary>The reply as one JSON object, "id" last as QEMU writes it.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject();
        if (Error is not null)
        {
            o["error"] = JsonSerializer.SerializeToNode(Error, QmpJsonContext.Default.QmpErrorBody);
        }
        else
        {
            o["return"] = Return?.DeepClone() ?? new JsonObject();
        }

        if (Id is not null)
        {
            o["id"] = Id.DeepClone();
        }

        return o;
    }
}
