using System.Globalization;
using System.Text.Json.Nodes;

namespace ExportServer.Nbd.Client;

/// <summary>
/// NBD URIs as QEMU reads them, turned into driver=nbd options: nbd://host[:port][/export] (also nbd+tcp),
/// nbd+unix:///export?socket=/path. The port defaults to 10809; IPv6 hosts are written in brackets.
/// </summary>
public static class NbdUri
{
    /// <summary>True when <paramref name="uri"/> is an NBD URI; then <paramref name="options"/> holds driver, server and export.</summary>
    public static bool TryParse(string uri, out JsonObject options)
    {
        options = new JsonObject();
        var schemeEnd = uri.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd < 0)
        {
            return false;
        }

        var scheme = uri[..schemeEnd];
        var unix = scheme == "nbd+unix";
        if (!unix && scheme is not ("nbd" or "nbd+tcp"))
        {
            return false;
        }

        var rest = uri[(schemeEnd + 3)..];
        var query = string.Empty;
        var q = rest.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            query = rest[(q + 1)..];
            rest = rest[..q];
        }

        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var authority = slash < 0 ? rest : rest[..slash];
        var export = slash < 0 ? string.Empty : Uri.UnescapeDataString(rest[(slash + 1)..]);

        JsonObject server;
        if (unix)
        {
            if (authority.Length != 0 || !query.StartsWith("socket=", StringComparison.Ordinal) || query.Contains('&', StringComparison.Ordinal))
            {
                return false;
            }

            var path = Uri.UnescapeDataString(query["socket=".Length..]);
            if (path.Length == 0)
            {
                return false;
            }

            server = new JsonObject { ["type"] = "unix", ["path"] = path };
        }
        else
        {
            if (query.Length != 0 || !TrySplitHostPort(authority, out var host, out var port))
            {
                return false;
            }

            server = new JsonObject { ["type"] = "inet", ["host"] = host, ["port"] = port };
        }

        options["driver"] = "nbd";
        options["server"] = server;
        if (export.Length != 0)
        {
            options["export"] = export;
        }

        return true;
    }

    private static bool TrySplitHostPort(string authority, out string host, out string port)
    {
        port = NbdServerAddress.DefaultPort.ToString(CultureInfo.InvariantCulture);
        host = authority;
        string? portText = null;
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                return false;
            }

            host = authority[1..close];
            var after = authority[(close + 1)..];
            if (after.Length != 0)
            {
                if (after[0] != ':')
                {
                    return false;
                }

                portText = after[1..];
            }
        }
        else
        {
            var colon = authority.LastIndexOf(':');
            if (colon >= 0)
            {
                host = authority[..colon];
                portText = authority[(colon + 1)..];
            }
        }

        if (portText is not null)
        {
            if (!ushort.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var p))
            {
                return false;
            }

            port = p.ToString(CultureInfo.InvariantCulture);
        }

        return host.Length != 0;
    }
}
