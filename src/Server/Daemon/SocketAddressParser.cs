using System.Net;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Server.Daemon;

/// <summary>QAPI SocketAddress (flat, as on the command line) and SocketAddressLegacy (QMP's {type, data}).</summary>
internal static class SocketAddressParser
{
    public static IReadOnlyList<EndPoint> Parse(OptionReader addr) => Parse(addr, out _);

    /// <summary>As <see cref="Parse(OptionReader)"/>; <paramref name="keepAlive"/> is inet's keep-alive, for the connections a listener accepts.</summary>
    public static IReadOnlyList<EndPoint> Parse(OptionReader addr, out bool keepAlive)
    {
        keepAlive = false;
        var type = addr.RequireString("type");
        var data = addr.Has("data") ? addr.GetObject("data")! : addr;
        IReadOnlyList<EndPoint> result;
        switch (type)
        {
            case "unix":
                var path = data.RequireString("path");
                var isAbstract = data.GetBool("abstract", false);

                // tight (default on) only shapes an abstract address: the name's own length, or padded.
                if (!data.GetBool("tight", true) && isAbstract)
                {
                    throw BlockException.NotSupported($"Parameter '{data.FullName("tight")}' is not supported");
                }

                result = [new UnixDomainSocketEndPoint(isAbstract ? "\0" + path : path)];
                break;
            case "inet":
                result = ParseInet(data);
                keepAlive = data.GetBool("keep-alive", false);
                break;
            case "fd" or "vsock":
                throw BlockException.NotSupported($"Socket address type '{type}' is not supported");
            default:
                throw BlockException.Invalid($"Parameter 'type' does not accept value '{type}'");
        }

        if (!ReferenceEquals(data, addr))
        {
            data.EnsureAllConsumed();
        }

        addr.EnsureAllConsumed();
        return result;
    }

    private static IReadOnlyList<EndPoint> ParseInet(OptionReader data)
    {
        var host = data.RequireString("host");
        var portText = data.RequireString("port");
        var numeric = data.GetBool("numeric", false);
        if (data.GetInt("to") is not null)
        {
            throw BlockException.NotSupported($"Parameter '{data.FullName("to")}' is not supported");
        }

        var ipv4 = data.GetBool("ipv4");
        var ipv6 = data.GetBool("ipv6");

        if (data.GetBool("mptcp", false))
        {
            throw BlockException.NotSupported($"Parameter '{data.FullName("mptcp")}' is not supported");
        }

        if (!ushort.TryParse(portText, out var port))
        {
            throw BlockException.Invalid($"address resolution failed for {host}:{portText}: Servname not supported for ai_socktype");
        }

        IPAddress[] addresses;
        if (host.Length == 0)
        {
            addresses = [IPAddress.IPv6Any];
        }
        else if (IPAddress.TryParse(host.Trim('[', ']'), out var ip))
        {
            addresses = [ip];
        }
        else if (numeric)
        {
            throw BlockException.Invalid($"address resolution failed for {host}:{portText}: Name or service not known");
        }
        else
        {
            try
            {
                addresses = Dns.GetHostAddresses(host);
            }
            catch (SocketException)
            {
                throw BlockException.Invalid($"address resolution failed for {host}:{portText}: Name or service not known");
            }
        }

        var endpoints = addresses
            .Where(a => (ipv4 != false || a.AddressFamily != AddressFamily.InterNetwork) &&
                        (ipv6 != false || a.AddressFamily != AddressFamily.InterNetworkV6))
            .Distinct()
            .Select(a => (EndPoint)new IPEndPoint(a, port))
            .ToList();
        if (endpoints.Count == 0)
        {
            throw BlockException.Invalid($"address resolution failed for {host}:{portText}: no usable address");
        }

        return endpoints;
    }
}
