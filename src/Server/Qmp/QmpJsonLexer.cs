namespace ExportServer.Server.Qmp;

/// <summary>
/// QEMU's JSON lexer (qobject/json-lexer.c) as a byte-at-a-time state machine. It accepts QEMU's
/// extensions (single-quoted strings, any byte 0x20..0xFD inside strings; decoding is left to the
/// parser) and recovers from an error as QEMU does: after a bad byte it skips input up to a
/// structural character, a control character or the impossible UTF-8 bytes 0xFE/0xFF, which a
/// client may send to force the parser into a known-good state (qmp-spec).
/// </summary>
internal sealed class QmpJsonLexer
{
    /// <summary>A single token longer than this is refused (QEMU's MAX_TOKEN_SIZE).</summary>
    public const int MaxTokenSize = 64 << 20;

    private readonly List<byte> _token = new();
    private State _state = State.Start;

    private enum State
    {
        Start,
        Recovery,
        DqString,
        DqEscape,
        SqString,
        SqEscape,
        Zero,
        NegativeNumber,
        NonZeroNumber,
        Mantissa,
        MantissaDigits,
        ExponentMark,
        ExponentSign,
        ExponentDigits,
        Keyword,
    }

    /// <summary>Lexes <paramref name="input"/>; complete tokens are appended to <paramref name="tokens"/>.</summary>
    public void Feed(ReadOnlySpan<byte> input, List<QmpJsonToken> tokens)
    {
        foreach (var b in input)
        {
            Feed(b, tokens);
        }
    }

    /// <summary>Ends the input: a number or keyword waiting for its terminator is emitted, a partial string is an error.</summary>
    public void Flush(List<QmpJsonToken> tokens)
    {
        switch (_state)
        {
            case State.Zero or State.NonZeroNumber:
                Emit(QmpJsonTokenType.Integer, tokens);
                break;
            case State.MantissaDigits or State.ExponentDigits:
                Emit(QmpJsonTokenType.Float, tokens);
                break;
            case State.Keyword:
                Emit(QmpJsonTokenType.Keyword, tokens);
                break;
            case State.Start or State.Recovery:
                break;
            default:
                Emit(QmpJsonTokenType.Error, tokens);
                break;
        }

        _state = State.Start;
    }

    private void Feed(byte b, List<QmpJsonToken> tokens)
    {
        // A terminator of a number or keyword belongs to the next token: it is looked at again.
        while (true)
        {
            switch (_state)
            {
                case State.Start:
                    Start(b, tokens);
                    break;
                case State.Recovery:
                    if ((b < 0x20 && b != '\t') || b >= 0xFE || IsStructural(b))
                    {
                        _state = State.Start;
                        continue;
                    }

                    break;
                case State.DqString or State.SqString:
                    _token.Add(b);
                    if (b == (_state == State.DqString ? '"' : '\''))
                    {
                        Emit(QmpJsonTokenType.String, tokens);
                    }
                    else if (b == '\\')
                    {
                        _state = _state == State.DqString ? State.DqEscape : State.SqEscape;
                    }
                    else if (!InString(b))
                    {
                        Fail(tokens);
                    }

                    break;
                case State.DqEscape or State.SqEscape:
                    _token.Add(b);
                    if (InString(b))
                    {
                        _state = _state == State.DqEscape ? State.DqString : State.SqString;
                    }
                    else
                    {
                        Fail(tokens);
                    }

                    break;
                case State.NegativeNumber:
                    _token.Add(b);
                    if (b == '0')
                    {
                        _state = State.Zero;
                    }
                    else if (b is >= (byte)'1' and <= (byte)'9')
                    {
                        _state = State.NonZeroNumber;
                    }
                    else
                    {
                        Fail(tokens);
                    }

                    break;
                case State.Zero:
                    if (IsDigit(b))
                    {
                        _token.Add(b);
                        Fail(tokens);
                    }
                    else if (b == '.')
                    {
                        _token.Add(b);
                        _state = State.Mantissa;
                    }
                    else
                    {
                        Emit(QmpJsonTokenType.Integer, tokens);
                        continue;
                    }

                    break;
                case State.NonZeroNumber:
                    if (IsDigit(b) || b is (byte)'e' or (byte)'E' or (byte)'.')
                    {
                        _token.Add(b);
                        _state = b switch
                        {
                            (byte)'.' => State.Mantissa,
                            (byte)'e' or (byte)'E' => State.ExponentMark,
                            _ => State.NonZeroNumber,
                        };
                    }
                    else
                    {
                        Emit(QmpJsonTokenType.Integer, tokens);
                        continue;
                    }

                    break;
                case State.Mantissa or State.ExponentSign:
                    _token.Add(b);
                    if (IsDigit(b))
                    {
                        _state = _state == State.Mantissa ? State.MantissaDigits : State.ExponentDigits;
                    }
                    else
                    {
                        Fail(tokens);
                    }

                    break;
                case State.MantissaDigits:
                    if (IsDigit(b) || b is (byte)'e' or (byte)'E')
                    {
                        _token.Add(b);
                        _state = IsDigit(b) ? State.MantissaDigits : State.ExponentMark;
                    }
                    else
                    {
                        Emit(QmpJsonTokenType.Float, tokens);
                        continue;
                    }

                    break;
                case State.ExponentMark:
                    _token.Add(b);
                    if (b is (byte)'+' or (byte)'-')
                    {
                        _state = State.ExponentSign;
                    }
                    else if (IsDigit(b))
                    {
                        _state = State.ExponentDigits;
                    }
                    else
                    {
                        Fail(tokens);
                    }

                    break;
                case State.ExponentDigits:
                    if (IsDigit(b))
                    {
                        _token.Add(b);
                    }
                    else
                    {
                        Emit(QmpJsonTokenType.Float, tokens);
                        continue;
                    }

                    break;
                case State.Keyword:
                    if (b is >= (byte)'a' and <= (byte)'z')
                    {
                        _token.Add(b);
                    }
                    else
                    {
                        Emit(QmpJsonTokenType.Keyword, tokens);
                        continue;
                    }

                    break;
            }

            break;
        }

        if (_token.Count > MaxTokenSize)
        {
            // One endless string or number: drop it and resynchronise like after a bad byte.
            _token.Clear();
            tokens.Add(new QmpJsonToken(QmpJsonTokenType.Oversized, []));
            _state = State.Recovery;
        }
    }

    private void Start(byte b, List<QmpJsonToken> tokens)
    {
        switch (b)
        {
            case (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n':
                return;
            case (byte)'{' or (byte)'}' or (byte)'[' or (byte)']' or (byte)':' or (byte)',':
                _token.Add(b);
                Emit(b switch
                {
                    (byte)'{' => QmpJsonTokenType.LCurly,
                    (byte)'}' => QmpJsonTokenType.RCurly,
                    (byte)'[' => QmpJsonTokenType.LSquare,
                    (byte)']' => QmpJsonTokenType.RSquare,
                    (byte)':' => QmpJsonTokenType.Colon,
                    _ => QmpJsonTokenType.Comma,
                }, tokens);
                return;
        }

        _token.Add(b);
        _state = b switch
        {
            (byte)'"' => State.DqString,
            (byte)'\'' => State.SqString,
            (byte)'0' => State.Zero,
            >= (byte)'1' and <= (byte)'9' => State.NonZeroNumber,
            (byte)'-' => State.NegativeNumber,
            >= (byte)'a' and <= (byte)'z' => State.Keyword,
            _ => State.Start,
        };
        if (_state == State.Start)
        {
            Fail(tokens);
        }
    }

    private void Emit(QmpJsonTokenType type, List<QmpJsonToken> tokens)
    {
        tokens.Add(new QmpJsonToken(type, _token.ToArray()));
        _token.Clear();
        _state = State.Start;
    }

    private void Fail(List<QmpJsonToken> tokens)
    {
        Emit(QmpJsonTokenType.Error, tokens);
        _state = State.Recovery;
    }

    private static bool InString(byte b) => b is >= 0x20 and <= 0xFD;

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    private static bool IsStructural(byte b) => b is (byte)'{' or (byte)'}' or (byte)'[' or (byte)']' or (byte)':' or (byte)',';
}
