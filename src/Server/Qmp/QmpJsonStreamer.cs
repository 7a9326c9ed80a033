using System.Text;

namespace ExportServer.Server.Qmp;

/// <summary>
/// Cuts a monitor's byte stream into top-level JSON values as QEMU's JSON streamer
/// (qobject/json-streamer.c) does: tokens are collected until brackets balance, then parsed.
/// A lexical error, a closing bracket with nothing open, or a value past QEMU's limits is answered
/// with an error and the streamer starts over with the next token, so one bad input never wedges
/// the connection.
/// </summary>
internal sealed class QmpJsonStreamer
{
    /// <summary>QEMU's MAX_NESTING: open brackets and braces together.</summary>
    public const int MaxNesting = 1024;

    /// <summary>QEMU's MAX_TOKEN_SIZE for the bytes of one value.</summary>
    public const long MaxValueSize = 64L << 20;

    /// <summary>QEMU's MAX_TOKEN_COUNT for one value.</summary>
    public const int MaxTokenCount = 2 << 20;

    private readonly QmpJsonLexer _lexer = new();
    private readonly List<QmpJsonToken> _lexed = new();
    private readonly List<QmpJsonToken> _value = new();
    private int _braces;
    private int _brackets;
    private long _size;

    /// <summary>Feeds bytes; every value completed by them (or error found) is appended to <paramref name="output"/>.</summary>
    public void Feed(ReadOnlySpan<byte> input, List<QmpInput> output)
    {
        _lexed.Clear();
        _lexer.Feed(input, _lexed);
        foreach (var token in _lexed)
        {
            Process(token, output);
        }
    }

    /// <summary>The end of the stream: what is pending is parsed (and most likely refused as incomplete).</summary>
    public void Flush(List<QmpInput> output)
    {
        _lexed.Clear();
        _lexer.Flush(_lexed);
        foreach (var token in _lexed)
        {
            Process(token, output);
        }

        if (_value.Count > 0)
        {
            output.Add(QmpJsonParser.Parse(_value));
            Reset();
        }
    }

    /// <summary>Parses one complete text, as a test or a command-line caller has it.</summary>
    public static QmpInput ParseOne(string json)
    {
        var streamer = new QmpJsonStreamer();
        var output = new List<QmpInput>();
        streamer.Feed(Encoding.UTF8.GetBytes(json), output);
        streamer.Flush(output);
        return output.Count > 0 ? output[0] : new QmpInput(null, "JSON parse error, expecting value");
    }

    private void Process(QmpJsonToken token, List<QmpInput> output)
    {
        switch (token.Type)
        {
            case QmpJsonTokenType.LCurly:
                _braces++;
                break;
            case QmpJsonTokenType.RCurly:
                _braces--;
                break;
            case QmpJsonTokenType.LSquare:
                _brackets++;
                break;
            case QmpJsonTokenType.RSquare:
                _brackets--;
                break;
            case QmpJsonTokenType.Error:
                Fail(output, $"JSON parse error, stray '{Encoding.UTF8.GetString(token.Text)}'");
                return;
            case QmpJsonTokenType.Oversized:
                Fail(output, "JSON token size limit exceeded");
                return;
        }

        if (_size + token.Text.Length + 1 > MaxValueSize)
        {
            Fail(output, "JSON token size limit exceeded");
            return;
        }

        if (_value.Count + 1 > MaxTokenCount)
        {
            Fail(output, "JSON token count limit exceeded");
            return;
        }

        if (_braces + _brackets > MaxNesting)
        {
            Fail(output, "JSON nesting depth limit exceeded");
            return;
        }

        _value.Add(token);
        _size += token.Text.Length;
        if ((_braces > 0 || _brackets > 0) && _braces >= 0 && _brackets >= 0)
        {
            return;
        }

        output.Add(QmpJsonParser.Parse(_value));
        Reset();
    }

    private void Fail(List<QmpInput> output, string error)
    {
        output.Add(new QmpInput(null, error));
        Reset();
    }

    private void Reset()
    {
        _value.Clear();
        _braces = _brackets = 0;
        _size = 0;
    }
}
