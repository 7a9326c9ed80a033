using System.Text;

namespace ExportServer.Server.Qmp;

/// <summary>
/// Cuts a monitor's character stream into top-level JSON values the way QEMU's JSON streamer
/// does: by bracket depth outside strings, so several commands may share a line and one command
/// may span lines. A closing bracket with nothing open is a parse error; so is nesting deeper
/// than QEMU allows. Values are parsed afterwards by the caller.
/// </summary>
internal sealed class QmpJsonSplitter
{
    /// <summary>QEMU's MAX_NESTING.</summary>
    public const int MaxNesting = 1024;

    /// <summary>QEMU's MAX_TOKEN_SIZE times a margin: a value this long is refused.</summary>
    public const int MaxValueLength = 64 << 20;

    private readonly StringBuilder _value = new();
    private int _depth;
    private bool _inString;
    private bool _escape;
    private bool _inScalar;

    public void Feed(ReadOnlySpan<char> text, List<QmpInput> output)
    {
        foreach (var c in text)
        {
            Feed(c, output);
        }
    }

    private void Feed(char c, List<QmpInput> output)
    {
        if (_inString)
        {
            Append(c, output);
            if (_escape)
            {
                _escape = false;
            }
            else if (c == '\\')
            {
                _escape = true;
            }
            else if (c == '"')
            {
                _inString = false;
                if (_depth == 0)
                {
                    Emit(output);
                }
            }

            return;
        }

        if (_inScalar)
        {
            if (!char.IsWhiteSpace(c) && c is not ('{' or '}' or '[' or ']' or '"' or ',' or ':'))
            {
                Append(c, output);
                return;
            }

            _inScalar = false;
            Emit(output);
        }

        switch (c)
        {
            case ' ' or '\t' or '\r' or '\n' when _depth == 0:
                return;
            case '"':
                _inString = true;
                Append(c, output);
                return;
            case '{' or '[':
                if (++_depth > MaxNesting)
                {
                    Fail(output, "JSON parse error, nesting too deep");
                    return;
                }

                Append(c, output);
                return;
            case '}' or ']':
                if (_depth == 0)
                {
                    Fail(output, "JSON parse error, expecting value");
                    return;
                }

                Append(c, output);
                if (--_depth == 0)
                {
                    Emit(output);
                }

                return;
            default:
                _inScalar = _depth == 0;
                Append(c, output);
                return;
        }
    }

    private void Append(char c, List<QmpInput> output)
    {
        if (_value.Length >= MaxValueLength)
        {
            Fail(output, "JSON parse error, token too large");
            return;
        }

        _value.Append(c);
    }

    private void Emit(List<QmpInput> output)
    {
        output.Add(new QmpInput(_value.ToString(), null));
        _value.Clear();
    }

    private void Fail(List<QmpInput> output, string error)
    {
        output.Add(new QmpInput(null, error));
        _value.Clear();
        _depth = 0;
        _inString = _escape = _inScalar = false;
    }
}
