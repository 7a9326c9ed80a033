using System.Net;

namespace ExportServer.Nbd.Server;

/// <summary>Where the NBD server listens and how many clients it accepts.</summary>
public sealed class NbdServerOptions
{
    /// <summary>TCP (IPv4/IPv6) and unix socket addresses to listen on.</summary>
    public required IReadOnlyList<EndPoint> EndPoints { get; init; }

    /// <summary>Most connections open at once; 0 = unlimited. Connections beyond it are closed right after accept.</summary>
    public int MaxConnections { get; init; }
}
