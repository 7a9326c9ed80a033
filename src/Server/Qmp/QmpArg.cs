namespace ExportServer.Server.Qmp;

/// <summary>
/// One member of a command's argument object: checked by the dispatcher before the handler runs,
/// and listed by query-qmp-schema. <paramref name="Values"/> restricts a string to an enumeration.
/// </summary>
internal sealed record QmpArg(string Name, QmpArgType Type, bool Optional = false, string[]? Values = null)
{
    public static QmpArg Str(string name, bool optional = false) => new(name, QmpArgType.String, optional);

    public static QmpArg Bool(string name, bool optional = true) => new(name, QmpArgType.Bool, optional);

    public static QmpArg Int(string name, bool optional = false) => new(name, QmpArgType.Int, optional);

    public static QmpArg Obj(string name, bool optional = false) => new(name, QmpArgType.Object, optional);

    public static QmpArg List(string name, bool optional = false) => new(name, QmpArgType.Array, optional);

    public static QmpArg Enum(string name, bool optional, params string[] values) => new(name, QmpArgType.String, optional, values);
}
