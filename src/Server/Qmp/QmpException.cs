namespace ExportServer.Server.Qmp;

/// <summary>A command failure with an explicit QMP error class; other failures are GenericError.</summary>
internal sealed class QmpException(string errorClass, string message) : Exception(message)
{
    public string ErrorClass { get; } = errorClass;

    public static QmpException Generic(string message) => new(QmpErrorClass.GenericError, message);

    public static QmpException DeviceNotFound(string message) => new(QmpErrorClass.DeviceNotFound, message);
}
