namespace ExportServer.Server.Qmp;

/// <summary>One top-level JSON value cut from a monitor's byte stream, or the lexical error found instead.</summary>
internal readonly record struct QmpInput(string? Json, string? Error);
