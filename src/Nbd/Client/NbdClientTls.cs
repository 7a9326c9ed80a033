using ExportServer.Nbd.Tls;

namespace ExportServer.Nbd.Client;

/// <summary>
/// TLS for the nbd driver's connections: client credentials (<c>tls-creds</c>) and the name the
/// server's certificate must carry (<c>tls-hostname</c>, else the inet host; none is checked for a
/// unix socket without one, as in QEMU).
/// </summary>
internal sealed record NbdClientTls(TlsCredentials Credentials, string? HostName);
