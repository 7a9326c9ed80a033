using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>
/// QEMU's JSON parser (qobject/json-parser.c) over one value's tokens, with its error texts: the
/// first error found is the one reported, a key given twice is refused ("duplicate key"), and
/// strings are decoded with QEMU's escapes (\' too) and checked to be valid UTF-8.
/// </summary>
internal sealed class QmpJsonParser
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly List<QmpJsonToken> _tokens;
    private int _next;
    private string? _error;

    private QmpJsonParser(List<QmpJsonToken> tokens)
    {
        _tokens = tokens;
    }

    /// <summary>Parses a balanced token list (nesting already bounded by the streamer).</summary>
    public static QmpInput Parse(List<QmpJsonToken> tokens)
    {
        var parser = new QmpJsonParser(tokens);
        return parser.TryValue(out var value) ? new QmpInput(value, null) : new QmpInput(null, parser._error);
    }

    private QmpJsonToken? Peek() => _next < _tokens.Count ? _tokens[_next] : null;

    private QmpJsonToken? Pop() => _next < _tokens.Count ? _tokens[_next++] : null;

    private bool Error(string message)
    {
        _error ??= "JSON parse error, " + message;
        return false;
    }

    private bool TryValue(out JsonNode? value)
    {
        value = null;
        if (Peek() is not { } token)
        {
            return Error("premature EOI");
        }

        switch (token.Type)
        {
            case QmpJsonTokenType.LCurly:
                return TryObject(out value);
            case QmpJsonTokenType.LSquare:
                return TryArray(out value);
            case QmpJsonTokenType.String:
                _next++;
                if (!TryString(token.Text, out var text))
                {
                    return false;
                }

                value = JsonValue.Create(text);
                return true;
            case QmpJsonTokenType.Integer or QmpJsonTokenType.Float:
                _next++;
                value = Number(token);
                return true;
            case QmpJsonTokenType.Keyword:
                _next++;
                switch (Encoding.ASCII.GetString(token.Text))
                {
                    case "true":
                        value = JsonValue.Create(true);
                        return true;
                    case "false":
                        value = JsonValue.Create(false);
                        return true;
                    case "null":
                        return true;
                    case var word:
                        return Error($"invalid keyword '{word}'");
                }

            default:
                return Error("expecting value");
        }
    }

    private bool TryObject(out JsonNode? value)
    {
        value = null;
        _next++;
        var obj = new JsonObject();
        if (Peek() is not { } peek)
        {
            return Error("premature EOI");
        }

        if (peek.Type == QmpJsonTokenType.RCurly)
        {
            _next++;
            value = obj;
            return true;
        }

        while (true)
        {
            if (!TryPair(obj))
            {
                return false;
            }

            if (Pop() is not { } token)
            {
                return Error("premature EOI");
            }

            if (token.Type == QmpJsonTokenType.RCurly)
            {
                value = obj;
                return true;
            }

            if (token.Type != QmpJsonTokenType.Comma)
            {
                return Error("expected separator in dict");
            }
        }
    }

    private bool TryPair(JsonObject obj)
    {
        if (Peek() is null)
        {
            return Error("premature EOI");
        }

        var keyOk = TryValue(out var key);
        if (!keyOk || key?.GetValueKind() != System.Text.Json.JsonValueKind.String)
        {
            return Error("key is not a string in object");
        }

        if (Pop() is not { } colon)
        {
            return Error("premature EOI");
        }

        if (colon.Type != QmpJsonTokenType.Colon)
        {
            return Error("missing : in object pair");
        }

        if (!TryValue(out var value))
        {
            return Error("Missing value in dict");
        }

        // JsonObject would throw on a second key (and only when first enumerated); QEMU refuses it here.
        if (!obj.TryAdd(key.GetValue<string>(), value))
        {
            return Error("duplicate key");
        }

        return true;
    }

    private bool TryArray(out JsonNode? value)
    {
        value = null;
        _next++;
        var list = new JsonArray();
        if (Peek() is not { } peek)
        {
            return Error("premature EOI");
        }

        if (peek.Type == QmpJsonTokenType.RSquare)
        {
            _next++;
            value = list;
            return true;
        }

        while (true)
        {
            if (!TryValue(out var item))
            {
                return Error("expecting value");
            }

            list.Add(item);
            if (Pop() is not { } token)
            {
                return Error("premature EOI");
            }

            if (token.Type == QmpJsonTokenType.RSquare)
            {
                value = list;
                return true;
            }

            if (token.Type != QmpJsonTokenType.Comma)
            {
                return Error("expected separator in list");
            }
        }
    }

    /// <summary>An integer as a signed, else unsigned 64-bit value, else a double, as QEMU's QNum.</summary>
    private static JsonNode Number(QmpJsonToken token)
    {
        var text = Encoding.ASCII.GetString(token.Text);
        if (token.Type == QmpJsonTokenType.Integer)
        {
            if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
            {
                return JsonValue.Create(l);
            }

            if (ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var u))
            {
                return JsonValue.Create(u);
            }
        }

        return JsonValue.Create(double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Decodes a quoted token: escapes as QEMU's parse_string, raw bytes as strict UTF-8.</summary>
    private bool TryString(byte[] token, out string text)
    {
        text = string.Empty;
        var end = token.Length - 1;
        var sb = new StringBuilder(end);
        var run = 1;
        for (var i = 1; i < end;)
        {
            if (token[i] != '\\')
            {
                i++;
                continue;
            }

            if (!AppendRaw(token.AsSpan(run, i - run), sb))
            {
                return false;
            }

            var begin = i++;
            var c = token[i++];
            switch (c)
            {
                case (byte)'"' or (byte)'\'' or (byte)'\\' or (byte)'/':
                    sb.Append((char)c);
                    break;
                case (byte)'b':
                    sb.Append('\b');
                    break;
                case (byte)'f':
                    sb.Append('\f');
                    break;
                case (byte)'n':
                    sb.Append('\n');
                    break;
                case (byte)'r':
                    sb.Append('\r');
                    break;
                case (byte)'t':
                    sb.Append('\t');
                    break;
                case (byte)'u':
                    var cp = Hex4(token, i, end);
                    i = Math.Min(i + 4, end);
                    if (cp is >= 0xD800 and <= 0xDBFF && i + 1 < end && token[i] == '\\' && token[i + 1] == 'u')
                    {
                        var trailing = Hex4(token, i + 2, end);
                        if (trailing is >= 0xDC00 and <= 0xDFFF)
                        {
                            cp = 0x10000 + ((cp & 0x3FF) << 10) + (trailing & 0x3FF);
                            i += 6;
                        }
                        else
                        {
                            cp = -1;
                        }
                    }

                    if (cp < 0 || cp is >= 0xD800 and <= 0xDFFF)
                    {
                        return Error($"{Encoding.ASCII.GetString(token, begin, i - begin)} is not a valid Unicode character");
                    }

                    sb.Append(char.ConvertFromUtf32(cp));
                    break;
                default:
                    return Error("invalid escape sequence in string");
            }

            run = i;
        }

        if (!AppendRaw(token.AsSpan(run, end - run), sb))
        {
            return false;
        }

        text = sb.ToString();
        return true;
    }

    private bool AppendRaw(ReadOnlySpan<byte> raw, StringBuilder sb)
    {
        try
        {
            sb.Append(StrictUtf8.GetString(raw));
            return true;
        }
        catch (DecoderFallbackException)
        {
            return Error("invalid UTF-8 sequence in string");
        }
    }

    private static int Hex4(byte[] token, int at, int end)
    {
        if (at + 4 > end)
        {
            return -1;
        }

        var cp = 0;
        for (var k = at; k < at + 4; k++)
        {
            var d = HexDigit(token[k]);
            if (d < 0)
            {
                return -1;
            }

            cp = (cp << 4) | d;
        }

        return cp;
    }

    private static int HexDigit(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
