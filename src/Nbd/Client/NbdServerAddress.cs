using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Client;

/// <summary>
/// QEMU's SocketAddress for an NBD server: type=inet with host and port, or type=unix with path.
/// The fd and vsock kinds are refused. <paramref name="Family"/> is what ipv4/ipv6 leave
/// (Unspecified for either) and <paramref name="KeepAlive"/> sets SO_KEEPALIVE on the connection.
/// </summary>
internal sealed record NbdServerAddress(string? Host, string? Port, string? UnixPath, AddressFamily Family = AddressFamily.Unspecified, bool KeepAlive = false)
{
    /// <summary>The IANA port of NBD, used when a URI names none.</summary>
    public const int DefaultPort = 10809;

    public bool IsUnix => UnixPath is not null;

    /// <summary>TLS for connections to this server (tls-creds), if any.</summary>
    public NbdClientTls? Tls { get; init; }

    public static NbdServerAddress Read(OptionReader server)
    {
        var type = server.RequireString("type");
        switch (type)
        {
            case "inet":
                var host = server.RequireString("host");
                var port = server.RequireString("port");
                // 'numeric' only changes how QEMU resolves an address it listens on; for a connection
                // it resolves names either way, and so do we.
                server.GetBool("numeric");
                var family = FamilyOf(server.GetBool("ipv4"), server.GetBool("ipv6"));
                var keepAlive = server.GetBool("keep-alive", false);

                if (server.GetInt("to") is not null)
                {
                    throw BlockException.NotSupported($"Parameter '{server.FullName("to")}' is not supported");
                }

                if (!ushort.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    throw BlockException.Invalid($"Parameter '{server.FullName("port")}' expects a port number, got '{port}'");
                }

                server.EnsureAllConsumed();
                return new NbdServerAddress(host, port, null, family, keepAlive);
            case "unix":
                var path = server.RequireString("path");
                if (server.GetBool("abstract", false))
                {
                    throw BlockException.NotSupported("Abstract unix sockets are not supported");
                }

                server.GetBool("tight");
                server.EnsureAllConsumed();
                return new NbdServerAddress(null, null, path);
            case "fd" or "vsock":
                throw BlockException.NotSupported($"NBD server address type '{type}' is not supported");
            default:
                throw BlockException.Invalid($"Parameter '{server.FullName("type")}' does not accept value '{type}'");
        }
    }

    /// <summary>The address family ipv4 and ipv6 leave, in QEMU's inet_ai_family_from_address order.</summary>
    private static AddressFamily FamilyOf(bool? ipv4, bool? ipv6)
    {
        if (ipv4 == false && ipv6 == false)
        {
            throw BlockException.Invalid("Cannot disable IPv4 and IPv6 at same time");
        }

        if (ipv4 == true && ipv6 == true)
        {
            return AddressFamily.Unspecified;
        }

        if (ipv6 == true || ipv4 == false)
        {
            return AddressFamily.InterNetworkV6;
        }

        return ipv4 == true || ipv6 == false ? AddressFamily.InterNetwork : AddressFamily.Unspecified;
    }

    /// <summary>
    /// The end point to connect to. An address of the other family than the one asked for is
    /// refused as getaddrinfo refuses it, except an IPv4 address where IPv6 is asked for, which
    /// QEMU reaches as a v4-mapped address.
    /// </summary>
    public EndPoint ToEndPoint()
    {
        if (UnixPath is not null)
        {
            return new UnixDomainSocketEndPoint(UnixPath);
        }

        var port = int.Parse(Port!, CultureInfo.InvariantCulture);
        if (!IPAddress.TryParse(Host, out var ip))
        {
            return new DnsEndPoint(Host!, port, Family);
        }

        if (Family == AddressFamily.InterNetwork && ip.AddressFamily == AddressFamily.InterNetworkV6)
        {
            throw BlockException.Invalid($"address resolution failed for {Host}:{Port}: Address family for hostname not supported");
        }

        return new IPEndPoint(ip, port);
    }

    /// <summary>QEMU's pseudo file name: "nbd+unix:///export?socket=path" or "nbd://host:port/export" ("" export omitted).</summary>
    public string FileName(string? export)
    {
        var tail = string.IsNullOrEmpty(export) ? string.Empty : "/" + export;
        if (UnixPath is not null)
        {
            return $"nbd+unix://{tail}?socket={UnixPath}";
        }

        // QEMU cannot put an IPv6 literal in its pseudo file name and leaves it empty, as here.
        return Host!.Contains(':', StringComparison.Ordinal) ? string.Empty : $"nbd://{Host}:{Port}{tail}";
    }
}
