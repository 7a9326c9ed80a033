namespace ExportServer.Nbd.Protocol;

/// <summary>
/// One transmission-phase request header. <see cref="Length"/> is 64 bits wide so compact (32-bit)
/// and extended headers share one shape; the WRITE payload is not part of it.
/// </summary>
internal readonly record struct NbdRequest(ushort Flags, ushort Type, ulong Cookie, ulong Offset, ulong Length);
