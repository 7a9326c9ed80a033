using System.Text.Json.Nodes;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Commands;

/// <summary>
/// query-qmp-schema from the command table: a "command" entry per command name, an "object" entry
/// per argument type (q_obj_NAME-arg, optional members with "default": null), an "enum" per
/// restricted string, the builtins, and the events we emit. Names are not masked, unlike QEMU's.
/// </summary>
internal static class QmpSchema
{
    public static readonly string[] Events =
    [
        "BLOCK_EXPORT_DELETED", "BLOCK_IMAGE_CORRUPTED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR",
        "BLOCK_JOB_PENDING", "BLOCK_JOB_READY", "BLOCK_WRITE_THRESHOLD", "JOB_STATUS_CHANGE",
    ];

    public static List<SchemaInfo> Build(IReadOnlyList<QmpCommand> commands)
    {
        var list = new List<SchemaInfo>();
        foreach (var c in commands)
        {
            var argType = $"q_obj_{c.Name}-arg";
            foreach (var name in c.Aliases.Prepend(c.Name))
            {
                list.Add(new SchemaInfo { Name = name, MetaType = "command", ArgType = argType, RetType = c.ReturnType });
            }

            var members = new JsonArray();
            foreach (var a in c.Args)
            {
                var type = a.Values is null ? BuiltinName(a.Type) : $"q_enum_{c.Name}-{a.Name}";
                var member = new JsonObject { ["name"] = a.Name, ["type"] = type };
                if (a.Optional)
                {
                    member["default"] = null;
                }

                members.Add((JsonNode)member);
                if (a.Values is { } values)
                {
                    list.Add(new SchemaInfo { Name = type, MetaType = "enum", Values = values });
                }
            }

            list.Add(new SchemaInfo { Name = argType, MetaType = "object", Members = members });
        }

        foreach (var e in Events)
        {
            list.Add(new SchemaInfo { Name = e, MetaType = "event", ArgType = "any" });
        }

        foreach (var (name, json) in new[] { ("str", "string"), ("bool", "boolean"), ("int", "int"), ("any", "value") })
        {
            list.Add(new SchemaInfo { Name = name, MetaType = "builtin", JsonType = json });
        }

        list.Add(new SchemaInfo { Name = "[any]", MetaType = "array", ElementType = "any" });
        return list;
    }

    private static string BuiltinName(QmpArgType t) => t switch
    {
        QmpArgType.String => "str",
        QmpArgType.Bool => "bool",
        QmpArgType.Int => "int",
        QmpArgType.Array => "[any]",
        _ => "any",
    };
}
