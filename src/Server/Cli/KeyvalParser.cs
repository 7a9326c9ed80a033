using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Server.Cli;

/// <summary>
/// QEMU's keyval syntax: <c>key=value</c> pairs separated by ',' (',,' is a literal comma),
/// dotted keys build nested objects, purely numeric key fragments build lists, the first
/// element may omit its key (the implied key), a later assignment to the same key wins.
/// Every scalar stays a string; typed readers (OptionReader) interpret it as QEMU's visitors do.
/// </summary>
internal static class KeyvalParser
{
    public static JsonObject Parse(string text, string? impliedKey = null)
    {
        var root = new JsonObject();
        var pos = 0;
        var first = true;
        while (pos < text.Length)
        {
            var keyEnd = pos;
            while (keyEnd < text.Length && text[keyEnd] != '=' && text[keyEnd] != ',')
            {
                keyEnd++;
            }

            string key;
            if (keyEnd == text.Length || text[keyEnd] == ',')
            {
                if (!(first && impliedKey is not null))
                {
                    var k = text[pos..keyEnd];
                    throw BlockException.Invalid(k.Length == 0
                        ? "Invalid parameter ''"
                        : $"Expected '=' after parameter '{k}'");
                }

                key = impliedKey;
            }
            else
            {
                key = text[pos..keyEnd];
                pos = keyEnd + 1;
            }

            var value = new StringBuilder();
            while (pos < text.Length)
            {
                if (text[pos] == ',')
                {
                    if (pos + 1 < text.Length && text[pos + 1] == ',')
                    {
                        value.Append(',');
                        pos += 2;
                        continue;
                    }

                    break;
                }

                value.Append(text[pos++]);
            }

            Store(root, key, value.ToString());
            first = false;
            if (pos < text.Length)
            {
                pos++; // the separating comma; a trailing one is allowed
            }
        }

        return (JsonObject)Listify(root, string.Empty);
    }

    private static void Store(JsonObject root, string key, string value)
    {
        var fragments = key.Split('.');
        var cur = root;
        for (var i = 0; i < fragments.Length; i++)
        {
            var f = fragments[i];
            if (!IsValidFragment(f))
            {
                throw BlockException.Invalid($"Invalid parameter '{key}'");
            }

            var prefix = string.Join('.', fragments, 0, i + 1);
            if (i == fragments.Length - 1)
            {
                if (cur[f] is JsonObject)
                {
                    throw BlockException.Invalid($"Parameters '{prefix}.*' used inconsistently");
                }

                cur[f] = StringNode(value);
                return;
            }

            switch (cur[f])
            {
                case null:
                    var next = new JsonObject();
                    cur[f] = next;
                    cur = next;
                    break;
                case JsonObject o:
                    cur = o;
                    break;
                default:
                    throw BlockException.Invalid($"Parameters '{prefix}.*' used inconsistently");
            }
        }
    }

    /// <summary>
    /// A JSON string node for a parsed value, made the way the monitor's parser makes one (backed by
    /// JSON text) so both kinds of input read alike. JsonValue.Create(string) builds a converter, which
    /// initialises the runtime's reflection, and Utf8JsonWriter builds its escaping tables: either was
    /// half a millisecond of every start. JSON needs only quotes, backslashes and control characters
    /// escaped.
    /// </summary>
    private static JsonNode StringNode(string value)
    {
        var text = new StringBuilder(value.Length + 2).Append('"');
        foreach (var c in value)
        {
            if (c is '"' or '\\')
            {
                text.Append('\\').Append(c);
            }
            else if (c < ' ')
            {
                text.Append("\\u00").Append(((int)c).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            }
            else
            {
                text.Append(c);
            }
        }

        return JsonNode.Parse(text.Append('"').ToString())!;
    }

    private static bool IsValidFragment(string f)
    {
        if (f.Length == 0)
        {
            return false;
        }

        if (f.All(char.IsAsciiDigit))
        {
            return true;
        }

        return char.IsAsciiLetter(f[0]) && f.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
    }

    /// <summary>Objects whose keys are all decimal numbers 0..n-1 become lists, as QEMU's keyval does.</summary>
    private static JsonNode Listify(JsonObject obj, string prefix)
    {
        foreach (var key in obj.Select(kv => kv.Key).ToList())
        {
            if (obj[key] is JsonObject child)
            {
                var converted = Listify(child, prefix + key + ".");
                if (!ReferenceEquals(converted, child))
                {
                    obj[key] = converted;
                }
            }
        }

        var numeric = obj.Count(kv => kv.Key.All(char.IsAsciiDigit));
        if (numeric == 0)
        {
            return obj;
        }

        if (numeric != obj.Count)
        {
            throw BlockException.Invalid($"Parameters '{prefix}*' used inconsistently");
        }

        var items = new JsonNode?[obj.Count];
        for (var i = 0; i < items.Length; i++)
        {
            var key = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!obj.TryGetPropertyValue(key, out var value))
            {
                throw BlockException.Invalid($"Parameter '{prefix}{i}' missing");
            }

            obj.Remove(key);
            items[i] = value;
        }

        return new JsonArray(items);
    }
}
