namespace ExportServer.Server.Qmp;

/// <summary>One lexical token with its raw bytes (quotes and escapes of a string included).</summary>
internal readonly record struct QmpJsonToken(QmpJsonTokenType Type, byte[] Text);
