using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Client;

/// <summary>
/// QEMU's SocketAddress for an NBD server: type=inet with host and port, or type=unix with path.
/// The fd and vsock kinds are refused.
/// </summary>
internal sealed record NbdServerAddress(string? Host, string? Port, string? UnixPath)
{
    /// <summary>The IANA port of NBD, used when a URI names none.</summary>
    public const int DefaultPort = 10809;

    public bool IsUnix => UnixPath is not null;

    public static NbdServerAddress Read(OptionReader server)
    {
        var type = server.RequireString("type");
        switch (type)
        {
            case "inet":
                var host = server.RequireString("host");
                var port = server.RequireString("port");
                foreach (var ignored in (string[])["numeric", "ipv4", "ipv6", "keep-alive"])
                {
                    server.GetBool(ignored);
                }

                if (server.GetInt("to") is not null)
                {
                    throw BlockException.NotSupported($"Parameter '{server.FullName("to")}' is not supported");
                }

                if (!ushort.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    throw BlockException.Invalid($"Parameter '{server.FullName("port")}' expects a port number, got '{port}'");
                }

                server.EnsureAllConsumed();
                return new NbdServerAddress(host, port, null);
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

    public EndPoint ToEndPoint()
    {
        if (UnixPath is not null)
        {
            return new UnixDomainSocketEndPoint(UnixPath);
        }

        var port = int.Parse(Port!, CultureInfo.InvariantCulture);
        return IPAddress.TryParse(Host, out var ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(Host!, port, AddressFamily.Unspecified);
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
