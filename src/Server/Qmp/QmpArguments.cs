using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>
/// Checks a command's arguments the way QEMU's QObject input visitor does, in declaration order:
/// a missing member, then a member of the wrong type, then (after all members) the first member
/// nobody declared. Nothing runs when a check fails.
/// </summary>
internal static class QmpArguments
{
    public static void Check(JsonObject args, QmpCommand command) => Check(args, command.Args, command.Boxed, string.Empty);

    /// <summary>Checks <paramref name="args"/>; <paramref name="prefix"/> places nested members in messages ("actions[0].data.").</summary>
    public static void Check(JsonObject args, IReadOnlyList<QmpArg> declared, bool boxed, string prefix)
    {
        foreach (var arg in declared)
        {
            if (!args.TryGetPropertyValue(arg.Name, out var value))
            {
                if (!arg.Optional)
                {
                    throw QmpException.Generic($"Parameter '{prefix}{arg.Name}' is missing");
                }

                continue;
            }

            if (!HasType(value, arg.Type))
            {
                throw QmpException.Generic($"Invalid parameter type for '{prefix}{arg.Name}', expected: {TypeName(arg.Type)}");
            }

            if (arg.Values is { } values && Array.IndexOf(values, value!.GetValue<string>()) < 0)
            {
                throw QmpException.Generic($"Parameter '{prefix}{arg.Name}' does not accept value '{value.GetValue<string>()}'");
            }
        }

        if (boxed)
        {
            return;
        }

        foreach (var (key, _) in args)
        {
            if (!declared.Any(a => a.Name == key))
            {
                throw QmpException.Generic($"Parameter '{prefix}{key}' is unexpected");
            }
        }
    }

    private static bool HasType(JsonNode? value, QmpArgType type)
    {
        var kind = value?.GetValueKind() ?? JsonValueKind.Null;
        return type switch
        {
            QmpArgType.String => kind == JsonValueKind.String,
            QmpArgType.Bool => kind is JsonValueKind.True or JsonValueKind.False,
            QmpArgType.Int => kind == JsonValueKind.Number && value!.AsValue().TryGetValue<long>(out _),
            QmpArgType.Object => kind == JsonValueKind.Object,
            QmpArgType.Array => kind == JsonValueKind.Array,
            _ => kind != JsonValueKind.Null,
        };
    }

    public static string TypeName(QmpArgType type) => type switch
    {
        QmpArgType.String => "string",
        QmpArgType.Bool => "boolean",
        QmpArgType.Int => "integer",
        QmpArgType.Object => "object",
        QmpArgType.Array => "array",
        _ => "any",
    };
}
