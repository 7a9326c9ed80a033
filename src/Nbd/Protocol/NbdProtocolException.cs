namespace ExportServer.Nbd.Protocol;

/// <summary>The peer broke the protocol (bad magic, impossible length, truncated message): the connection is dropped.</summary>
internal sealed class NbdProtocolException(string message) : Exception(message);
