using System.Globalization;
using System.Text.Json;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// One object of the LUKS2 JSON metadata with its path ("keyslots.0.kdf"), read field by field:
/// a missing field or one of the wrong type or range is an error that names it. The format writes
/// 64-bit values (offsets, sizes) as decimal strings and small ones as JSON numbers.
/// </summary>
internal readonly struct Luks2Json
{
    private readonly JsonElement _element;

    public Luks2Json(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Corrupt(path, "is not an object");
        }

        _element = element;
        Path = path;
    }

    public string Path { get; }

    public static BlockException Corrupt(string path, string what) => BlockException.Invalid($"LUKS2 metadata: {path} {what}");

    public bool Has(string name) => _element.TryGetProperty(name, out _);

    public Luks2Json Object(string name) => new(Get(name), Name(name));

    /// <summary>The members of an object whose names are the numbers 0..<paramref name="maxId"/> (keyslots, segments, digests).</summary>
    public IEnumerable<(int Id, Luks2Json Value)> Numbered(string name, int maxId)
    {
        var map = Object(name);
        foreach (var member in map._element.EnumerateObject())
        {
            if (!int.TryParse(member.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id > maxId)
            {
                throw Corrupt(map.Path, $"has a member '{member.Name}' that is not a number from 0 to {maxId}");
            }

            yield return (id, new Luks2Json(member.Value, $"{map.Path}.{member.Name}"));
        }
    }

    public string String(string name)
    {
        var value = Get(name);
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Corrupt(Name(name), "is not a string");
    }

    /// <summary>A JSON number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public long Number(string name, long min, long max)
    {
        var value = Get(name);
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var n))
        {
            throw Corrupt(Name(name), "is not an integer");
        }

        return n >= min && n <= max ? n : throw Corrupt(Name(name), $"{n} is out of range ({min} to {max})");
    }

    /// <summary>A 64-bit value written as a decimal string, at most <see cref="long.MaxValue"/>.</summary>
    public long Size(string name)
    {
        var text = String(name);
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw Corrupt(Name(name), $"'{Shorten(text)}' is not a decimal size");
    }

    public byte[] Base64(string name, int minLength, int maxLength)
    {
        var text = String(name);
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw Corrupt(Name(name), "is not base64");
        }

        return bytes.Length >= minLength && bytes.Length <= maxLength
            ? bytes
            : throw Corrupt(Name(name), $"has {bytes.Length} bytes (expected {minLength} to {maxLength})");
    }

    /// <summary>An array of strings (the keyslot and segment ids a digest covers, a segment's flags).</summary>
    public string[] Strings(string name)
    {
        var value = Get(name);
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw Corrupt(Name(name), "is not an array");
        }

        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Corrupt(Name(name), "holds something other than strings"));
        }

        return [.. list];
    }

    private JsonElement Get(string name) =>
        _element.TryGetProperty(name, out var value) ? value : throw Corrupt(Name(name), "is missing");

    private string Name(string name) => $"{Path}.{name}";

    /// <summary>Header text quoted in an error, cut so a damaged header cannot flood a log.</summary>
    public static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
