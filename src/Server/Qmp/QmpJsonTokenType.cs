namespace ExportServer.Server.Qmp;

/// <summary>The kinds of token QEMU's JSON lexer hands to its streamer.</summary>
internal enum QmpJsonTokenType
{
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,

    /// <summary>Bytes that form no token: the streamer answers "stray '…'" and starts over.</summary>
    Error,

    /// <summary>A token longer than QEMU's MAX_TOKEN_SIZE, dropped unread.</summary>
    Oversized,
}
