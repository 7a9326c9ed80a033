namespace ExportServer.Server.Qmp;

/// <summary>QEMU's QapiErrorClass names, the "class" member of an error reply.</summary>
internal static class QmpErrorClass
{
    public const string GenericError = "GenericError";
    public const string CommandNotFound = "CommandNotFound";
    public const string DeviceNotFound = "DeviceNotFound";
}
