using System.Net;
using ExportServer.Block.Core;
using ExportServer.Nbd.Tls;

namespace ExportServer.Nbd.Server;

/// <summary>Where the NBD server listens, how many clients it accepts, and whether they must use TLS.</summary>
public sealed class NbdServerOptions
{
    /// <summary>QEMU's default handshake limit (handshake-max-seconds), in seconds.</summary>
    public const int DefaultHandshakeSeconds = 10;

    /// <summary>QEMU's default max-connections for nbd-server-start and --nbd-server (since 9.1).</summary>
    public const int DefaultMaxConnections = 100;

    /// <summary>TCP (IPv4/IPv6) and unix socket addresses to listen on.</summary>
    public required IReadOnlyList<EndPoint> EndPoints { get; init; }

    /// <summary>Most connections open at once; 0 = unlimited. Beyond it, new clients wait in the listen backlog.</summary>
    public int MaxConnections { get; init; }

    /// <summary>SO_KEEPALIVE on accepted TCP connections (inet keep-alive=on, as QEMU 10.1 applies it to listeners).</summary>
    public bool KeepAlive { get; init; }

    /// <summary>How long a client may take to reach transmission; zero = no limit.</summary>
    public TimeSpan HandshakeLimit { get; init; } = TimeSpan.FromSeconds(DefaultHandshakeSeconds);

    /// <summary>Server credentials: when set, every client must STARTTLS before anything else.</summary>
    public TlsCredentials? TlsCredentials { get; init; }

    /// <summary>The authorization object that checks a client certificate's distinguished name, looked up in <see cref="Objects"/> for each client.</summary>
    public string? TlsAuthz { get; init; }

    /// <summary>Where <see cref="TlsAuthz"/> is found.</summary>
    public NamedObjects? Objects { get; init; }
}
