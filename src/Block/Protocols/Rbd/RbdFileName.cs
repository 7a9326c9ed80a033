using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// <c>rbd:pool/[namespace/]image[@snapshot][:key=value[:key=value…]]</c> as QEMU reads it: a
/// backslash escapes the next character; "id" is the user, "conf" the configuration file, any other
/// key a Ceph option, passed on in order as "=keyvalue-pairs" (a JSON list name, value, …).
/// </summary>
internal static class RbdFileName
{
    public static JsonObject Parse(string fileName)
    {
        var rest = fileName["rbd:".Length..];
        var options = new JsonObject { ["driver"] = "rbd" };
        var pool = NextToken(ref rest, '/');
        if (rest is null)
        {
            throw BlockException.Invalid("Pool name is required");
        }

        options["pool"] = Unescape(pool);
        string image;
        if (IndexOfUnescaped(rest, '@') >= 0)
        {
            image = NextToken(ref rest, '@');
            options["snapshot"] = Unescape(NextToken(ref rest!, ':'));
        }
        else
        {
            image = NextToken(ref rest, ':');
        }

        if (IndexOfUnescaped(image, '/') >= 0)
        {
            string? imageRest = image;
            options["namespace"] = Unescape(NextToken(ref imageRest, '/'));
            image = imageRest!;
        }
        else
        {
            options["namespace"] = string.Empty;
        }

        options["image"] = Unescape(image);
        var pairs = new JsonArray();
        while (rest is not null)
        {
            var name = NextToken(ref rest, '=');
            if (rest is null)
            {
                throw BlockException.Invalid($"conf option {name} has no value");
            }

            name = Unescape(name);
            var value = Unescape(NextToken(ref rest, ':'));
            switch (name)
            {
                case "conf":
                    options["conf"] = value;
                    break;
                case "id":
                    options["user"] = value;
                    break;
                default:
                    pairs.Add((JsonNode)JsonValue.Create(name));
                    pairs.Add((JsonNode)JsonValue.Create(value));
                    break;
            }
        }

        if (pairs.Count > 0)
        {
            options["=keyvalue-pairs"] = pairs.ToJsonString();
        }

        return options;
    }

    /// <summary>The text before the first unescaped <paramref name="delimiter"/>; <paramref name="rest"/> becomes what follows it, or null when there is none.</summary>
    private static string NextToken(ref string? rest, char delimiter)
    {
        var s = rest!;
        var i = IndexOfUnescaped(s, delimiter);
        if (i < 0)
        {
            rest = null;
            return s;
        }

        rest = s[(i + 1)..];
        return s[..i];
    }

    private static int IndexOfUnescaped(string s, char c)
    {
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == c)
            {
                return i;
            }

            if (s[i] == '\\' && i + 1 < s.Length)
            {
                i++;
            }
        }

        return -1;
    }

    private static string Unescape(string s)
    {
        var b = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 1 < s.Length)
            {
                i++;
            }

            b.Append(s[i]);
        }

        return b.ToString();
    }
}
