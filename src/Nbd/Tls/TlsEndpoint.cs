namespace ExportServer.Nbd.Tls;

/// <summary>Which side of a TLS session a set of credentials is for (QEMU's <c>endpoint</c>).</summary>
public enum TlsEndpoint
{
    Client,
    Server,
}
