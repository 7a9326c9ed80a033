namespace ExportServer.Nbd.Protocol;

/// <summary>A client option header: the option code and the length of the data that follows.</summary>
internal readonly record struct NbdOptionHeader(uint Option, uint Length);
