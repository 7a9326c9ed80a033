using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExportServer.Block.Core.Options;

/// <summary>
/// Reads typed options from one JSON tree, whether it came from the keyval command line (every
/// scalar a string) or from QMP/JSON (typed scalars), the way QEMU's QAPI input visitors do, and
/// reports problems with QEMU's wording ("Parameter 'file.filename' is missing"). Every key read
/// is remembered so that <see cref="EnsureAllConsumed"/> can refuse the unexpected ones.
/// </summary>
public sealed class OptionReader
{
    private readonly HashSet<string> _consumed = new(StringComparer.Ordinal);

    public OptionReader(JsonObject options, string prefix = "")
    {
        Options = options;
        Prefix = prefix;
    }

    public JsonObject Options { get; }

    /// <summary>The dotted path of this object inside the whole tree ("file." for a child).</summary>
    public string Prefix { get; }

    public string FullName(string key) => Prefix + key;

    public bool Has(string key) => Options.ContainsKey(key) && Options[key] is not null;

    public JsonNode? Raw(string key)
    {
        _consumed.Add(key);
        return Options.TryGetPropertyValue(key, out var v) ? v : null;
    }

    public void Consume(string key) => _consumed.Add(key);

    public string RequireString(string key) =>
        GetString(key) ?? throw BlockException.Invalid($"Parameter '{FullName(key)}' is missing");

    public string? GetString(string key)
    {
        var v = Raw(key);
        if (v is null)
        {
            return null;
        }

        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String)
        {
            return jv.GetValue<string>();
        }

        throw BlockException.Invalid($"Invalid parameter type for '{FullName(key)}', expected: string");
    }

    public bool? GetBool(string key)
    {
        var v = Raw(key);
        switch (v)
        {
            case null:
                return null;
            case JsonValue jv when jv.GetValueKind() is JsonValueKind.True or JsonValueKind.False:
                return jv.GetValue<bool>();
            case JsonValue jv when jv.GetValueKind() == JsonValueKind.String:
                return ParseBool(jv.GetValue<string>()) ??
                       throw BlockException.Invalid($"Parameter '{FullName(key)}' expects 'on' or 'off'");
            default:
                throw BlockException.Invalid($"Invalid parameter type for '{FullName(key)}', expected: boolean");
        }
    }

    public bool GetBool(string key, bool defaultValue) => GetBool(key) ?? defaultValue;

    public static bool? ParseBool(string s) => s switch
    {
        "on" or "yes" or "true" or "y" => true,
        "off" or "no" or "false" or "n" => false,
        _ => null,
    };

    public long? GetInt(string key) => GetNumber(key, allowSuffix: false);

    /// <summary>A size: an integer, in keyval form optionally with a k/M/G/T/P/E suffix (powers of 1024).</summary>
    public long? GetSize(string key) => GetNumber(key, allowSuffix: true);

    private long? GetNumber(string key, bool allowSuffix)
    {
        var v = Raw(key);
        switch (v)
        {
            case null:
                return null;
            case JsonValue jv when jv.GetValueKind() == JsonValueKind.Number:
                if (jv.TryGetValue<long>(out var l))
                {
                    return l;
                }

                // Options built in process hold CLR ints, which TryGetValue<long> does not widen.
                if (jv.TryGetValue<int>(out var i))
                {
                    return i;
                }

                if (jv.TryGetValue<ulong>(out var ul) && ul <= long.MaxValue)
                {
                    return (long)ul;
                }

                throw BlockException.Invalid($"Invalid parameter type for '{FullName(key)}', expected: integer");
            case JsonValue jv when jv.GetValueKind() == JsonValueKind.String:
                var s = jv.GetValue<string>();
                var parsed = allowSuffix ? ParseSize(s) : ParseInteger(s);
                return parsed ?? throw (allowSuffix
                    ? NotASize(FullName(key))
                    : BlockException.Invalid($"Parameter '{FullName(key)}' expects integer"));
            default:
                throw BlockException.Invalid($"Invalid parameter type for '{FullName(key)}', expected: integer");
        }
    }

    public static long? ParseInteger(string s)
    {
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return long.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var h) ? h : null;
        }

        return long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    /// <summary>QEMU's size syntax: digits (optionally a fraction) and an optional b/k/M/G/T/P/E suffix.</summary>
    public static long? ParseSize(string s)
    {
        if (s.Length == 0)
        {
            return null;
        }

        long mult = 1;
        var last = s[^1];
        var suffix = char.ToUpperInvariant(last) switch
        {
            'B' => 1L,
            'K' => 1L << 10,
            'M' => 1L << 20,
            'G' => 1L << 30,
            'T' => 1L << 40,
            'P' => 1L << 50,
            'E' => 1L << 60,
            _ => 0L,
        };
        var digits = s;
        if (suffix != 0)
        {
            mult = suffix;
            digits = s[..^1];
        }

        if (digits.Length == 0 || digits[0] == '-')
        {
            return null;
        }

        if (mult == 1)
        {
            return ParseInteger(digits) is { } whole && whole >= 0 ? whole : null;
        }

        if (!decimal.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var d))
        {
            return null;
        }

        var result = d * mult;
        return result > long.MaxValue ? null : (long)result;
    }

    public T? GetEnum<T>(string key, IReadOnlyDictionary<string, T> values)
        where T : struct
    {
        var s = GetString(key);
        if (s is null)
        {
            return null;
        }

        return values.TryGetValue(s, out var v)
            ? v
            : throw BlockException.Invalid($"Parameter '{FullName(key)}' does not accept value '{s}'");
    }

    /// <summary>A nested object as its own reader (dotted keys become nested objects before this).</summary>
    public OptionReader? GetObject(string key)
    {
        var v = Raw(key);
        return v switch
        {
            null => null,
            JsonObject o => new OptionReader(o, FullName(key) + "."),
            _ => throw BlockException.Invalid($"Invalid parameter type for '{FullName(key)}', expected: object"),
        };
    }

    /// <summary>Refuses every key that no reader asked for, as QEMU's visitors do.</summary>
    public void EnsureAllConsumed()
    {
        foreach (var (key, _) in Options)
        {
            if (!_consumed.Contains(key))
            {
                throw BlockException.Invalid($"Parameter '{FullName(key)}' is unexpected");
            }
        }
    }

    /// <summary>QEMU's error for a size that is not one, with its hint on the suffixes.</summary>
    public static BlockException NotASize(string parameter) => new(
        Errno.EINVAL,
        $"Parameter '{parameter}' expects a non-negative number below 2^64",
        hint: "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.");
}
