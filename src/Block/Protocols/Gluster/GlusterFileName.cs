using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Protocols.Gluster;

/// <summary>
/// <c>gluster[+tcp|+unix|+rdma]://[host[:port]]/volume/path[?socket=/path]</c> as QEMU reads it:
/// tcp is the default (rdma is taken as tcp, as QEMU does); unix names no host and needs exactly
/// the socket parameter; the first path segment is the volume, the rest the file's path.
/// </summary>
internal static class GlusterFileName
{
    public static JsonObject Parse(string fileName)
    {
        var invalid = BlockException.Invalid($"invalid URI {fileName}");
        var schemeEnd = fileName.IndexOf("://", StringComparison.Ordinal);
        var transport = fileName[..schemeEnd] switch
        {
            "gluster" or "gluster+tcp" or "gluster+rdma" => "tcp",
            "gluster+unix" => "unix",
            _ => throw invalid,
        };
        var rest = fileName[(schemeEnd + 3)..];
        string? query = null;
        var q = rest.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            query = rest[(q + 1)..];
            rest = rest[..q];
        }

        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            throw invalid;
        }

        var authority = rest[..slash];
        var segments = rest[(slash + 1)..];
        var volumeEnd = segments.IndexOf('/', StringComparison.Ordinal);
        if (volumeEnd <= 0 || volumeEnd == segments.Length - 1)
        {
            throw invalid;
        }

        JsonObject server;
        if (transport == "unix")
        {
            if (authority.Length > 0 || query is null || !query.StartsWith("socket=", StringComparison.Ordinal) || query.Contains('&', StringComparison.Ordinal))
            {
                throw invalid;
            }

            server = new JsonObject { ["type"] = "unix", ["path"] = Uri.UnescapeDataString(query["socket=".Length..]) };
        }
        else
        {
            if (query is not null)
            {
                throw invalid;
            }

            var (host, port) = SplitHostPort(authority, fileName);
            server = new JsonObject { ["type"] = "inet", ["host"] = host, ["port"] = port };
        }

        return new JsonObject
        {
            ["driver"] = "gluster",
            ["volume"] = Uri.UnescapeDataString(segments[..volumeEnd]),
            ["path"] = Uri.UnescapeDataString(segments[(volumeEnd + 1)..]),
            ["server"] = new JsonArray(server),
        };
    }

    private static (string Host, string Port) SplitHostPort(string authority, string fileName)
    {
        var defaultPort = GlusterDriver.DefaultPort.ToString(CultureInfo.InvariantCulture);
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                throw BlockException.Invalid($"invalid URI {fileName}");
            }

            var after = authority[(close + 1)..];
            return (authority[1..close], after.StartsWith(':') ? after[1..] : defaultPort);
        }

        var colon = authority.LastIndexOf(':');
        var host = colon >= 0 ? authority[..colon] : authority;
        return (host.Length > 0 ? host : "localhost", colon >= 0 ? authority[(colon + 1)..] : defaultPort);
    }
}
