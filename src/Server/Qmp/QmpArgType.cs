namespace ExportServer.Server.Qmp;

/// <summary>The JSON types a command argument may have, named in errors as QEMU names them.</summary>
internal enum QmpArgType
{
    String,
    Bool,
    Int,
    Object,
    Array,
    Any,
}
