using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// <c>ssh://[user@]host[:port]/path[?host_key_check=…]</c> (QEMU's ssh_parse_uri): the user, host,
/// port and path of the URI, and the legacy host_key_check query (no, yes, md5:H, sha1:H, sha256:H).
/// </summary>
internal sealed partial class SshDriver : IProtocolFileNames
{
    public JsonObject? ParseFileName(string fileName)
    {
        if (!fileName.StartsWith("ssh:", StringComparison.Ordinal))
        {
            return null;
        }

        if (!Uri.TryCreate(fileName, UriKind.Absolute, out var uri) || uri.Scheme != "ssh")
        {
            throw BlockException.Invalid("URI scheme must be 'ssh'");
        }

        if (string.IsNullOrEmpty(uri.Host))
        {
            throw BlockException.Invalid("missing hostname in URI");
        }

        var server = new JsonObject { ["host"] = uri.IdnHost.Trim('[', ']') };
        if (!uri.IsDefaultPort && uri.Port > 0)
        {
            server["port"] = uri.Port.ToString(CultureInfo.InvariantCulture);
        }

        var options = new JsonObject { ["driver"] = "ssh", ["server"] = server, ["path"] = Uri.UnescapeDataString(uri.AbsolutePath) };
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            options["user"] = Uri.UnescapeDataString(uri.UserInfo);
        }

        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0 || pair[..eq] != "host_key_check")
            {
                throw BlockException.Invalid("could not parse query parameters");
            }

            var value = Uri.UnescapeDataString(pair[(eq + 1)..]);
            var check = SshHostKeyCheck.ParseLegacy(value) ?? throw BlockException.Invalid($"unknown host_key_check setting ({value})");
            var json = new JsonObject { ["mode"] = check.Mode };
            if (check.HashType is not null)
            {
                json["type"] = check.HashType;
                json["hash"] = check.Hash;
            }

            options["host-key-check"] = json;
        }

        return options;
    }
}
