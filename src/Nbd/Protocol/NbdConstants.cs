namespace ExportServer.Nbd.Protocol;

/// <summary>
/// The NBD protocol vocabulary (NBD project doc/proto.md, fixed newstyle with structured replies and
/// extended headers): magics, options, option replies, info types, commands, flags, reply chunk types,
/// wire errors, and their names for logs. Shared by the server and the client.
/// </summary>
internal static class NbdConstants
{
    // ---- magics -------------------------------------------------------------------------------

    /// <summary>"NBDMAGIC": first 8 bytes the server sends.</summary>
    public const ulong InitMagic = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle magic, also the prefix of every client option.</summary>
    public const ulong OptionMagic = 0x49484156454F5054;

    /// <summary>Prefix of every option reply.</summary>
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    public const uint RequestMagic = 0x25609513;
    public const uint ExtendedRequestMagic = 0x21e41c71;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const uint ExtendedReplyMagic = 0x6e8a278c;

    // ---- sizes --------------------------------------------------------------------------------

    public const int RequestHeaderSize = 28;
    public const int ExtendedRequestHeaderSize = 32;
    public const int SimpleReplySize = 16;
    public const int StructuredReplyHeaderSize = 20;
    public const int ExtendedReplyHeaderSize = 32;
    public const int OptionHeaderSize = 16;
    public const int OptionReplyHeaderSize = 20;

    /// <summary>Largest payload of one READ or WRITE (and the advertised maximum block size).</summary>
    public const int MaxPayloadSize = 32 * 1024 * 1024;

    /// <summary>Longest string (export name, description, message) the protocol allows.</summary>
    public const int MaxStringSize = 4096;

    // ---- handshake flags (server, 16 bits) and client flags (32 bits) ------------------------

    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    // ---- options ------------------------------------------------------------------------------

    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptPeekExport = 4;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;
    public const uint OptExtendedHeaders = 11;

    // ---- option reply types -------------------------------------------------------------------

    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepFlagError = 1u << 31;
    public const uint RepErrUnsup = RepFlagError | 1;
    public const uint RepErrPolicy = RepFlagError | 2;
    public const uint RepErrInvalid = RepFlagError | 3;
    public const uint RepErrPlatform = RepFlagError | 4;
    public const uint RepErrTlsReqd = RepFlagError | 5;
    public const uint RepErrUnknown = RepFlagError | 6;
    public const uint RepErrShutdown = RepFlagError | 7;
    public const uint RepErrBlockSizeReqd = RepFlagError | 8;
    public const uint RepErrTooBig = RepFlagError | 9;
    public const uint RepErrExtHeaderReqd = RepFlagError | 10;

    // ---- info types (NBD_OPT_INFO / NBD_OPT_GO) -----------------------------------------------

    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // ---- transmission flags -------------------------------------------------------------------

    public const ushort FlagHasFlags = 1 << 0;
    public const ushort FlagReadOnly = 1 << 1;
    public const ushort FlagSendFlush = 1 << 2;
    public const ushort FlagSendFua = 1 << 3;
    public const ushort FlagRotational = 1 << 4;
    public const ushort FlagSendTrim = 1 << 5;
    public const ushort FlagSendWriteZeroes = 1 << 6;
    public const ushort FlagSendDf = 1 << 7;
    public const ushort FlagCanMultiConn = 1 << 8;
    public const ushort FlagSendResize = 1 << 9;
    public const ushort FlagSendCache = 1 << 10;
    public const ushort FlagSendFastZero = 1 << 11;
    public const ushort FlagBlockStatusPayload = 1 << 12;

    // ---- commands -----------------------------------------------------------------------------

    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;
    public const ushort CmdResize = 8;

    // ---- command flags ------------------------------------------------------------------------

    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;
    public const ushort CmdFlagPayloadLen = 1 << 5;

    // ---- structured reply flags and chunk types -----------------------------------------------

    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeBlockStatusExt = 6;
    public const ushort ReplyTypeError = (1 << 15) | 1;
    public const ushort ReplyTypeErrorOffset = (1 << 15) | 2;

    // ---- base:allocation state bits -----------------------------------------------------------

    public const uint StateHole = 1 << 0;
    public const uint StateZero = 1 << 1;

    // ---- wire errors --------------------------------------------------------------------------

    public const uint EPERM = 1;
    public const uint EIO = 5;
    public const uint ENOMEM = 12;
    public const uint EINVAL = 22;
    public const uint ENOSPC = 28;
    public const uint EOVERFLOW = 75;
    public const uint ENOTSUP = 95;
    public const uint ESHUTDOWN = 108;

    // ---- names for logs -----------------------------------------------------------------------

    public static string OptionName(uint option) => option switch
    {
        OptExportName => "EXPORT_NAME",
        OptAbort => "ABORT",
        OptList => "LIST",
        OptPeekExport => "PEEK_EXPORT",
        OptStartTls => "STARTTLS",
        OptInfo => "INFO",
        OptGo => "GO",
        OptStructuredReply => "STRUCTURED_REPLY",
        OptListMetaContext => "LIST_META_CONTEXT",
        OptSetMetaContext => "SET_META_CONTEXT",
        OptExtendedHeaders => "EXTENDED_HEADERS",
        _ => "unknown",
    };

    public static string ReplyName(uint reply) => reply switch
    {
        RepAck => "ACK",
        RepServer => "SERVER",
        RepInfo => "INFO",
        RepMetaContext => "META_CONTEXT",
        RepErrUnsup => "ERR_UNSUP",
        RepErrPolicy => "ERR_POLICY",
        RepErrInvalid => "ERR_INVALID",
        RepErrPlatform => "ERR_PLATFORM",
        RepErrTlsReqd => "ERR_TLS_REQD",
        RepErrUnknown => "ERR_UNKNOWN",
        RepErrShutdown => "ERR_SHUTDOWN",
        RepErrBlockSizeReqd => "ERR_BLOCK_SIZE_REQD",
        RepErrTooBig => "ERR_TOO_BIG",
        RepErrExtHeaderReqd => "ERR_EXT_HEADER_REQD",
        _ => "unknown",
    };

    public static string InfoTypeName(ushort info) => info switch
    {
        InfoExport => "EXPORT",
        InfoName => "NAME",
        InfoDescription => "DESCRIPTION",
        InfoBlockSize => "BLOCK_SIZE",
        _ => "unknown",
    };

    public static string CommandName(ushort command) => command switch
    {
        CmdRead => "READ",
        CmdWrite => "WRITE",
        CmdDisc => "DISC",
        CmdFlush => "FLUSH",
        CmdTrim => "TRIM",
        CmdCache => "CACHE",
        CmdWriteZeroes => "WRITE_ZEROES",
        CmdBlockStatus => "BLOCK_STATUS",
        CmdResize => "RESIZE",
        _ => "unknown",
    };

    public static string ReplyTypeName(ushort type) => type switch
    {
        ReplyTypeNone => "NONE",
        ReplyTypeOffsetData => "OFFSET_DATA",
        ReplyTypeOffsetHole => "OFFSET_HOLE",
        ReplyTypeBlockStatus => "BLOCK_STATUS",
        ReplyTypeBlockStatusExt => "BLOCK_STATUS_EXT",
        ReplyTypeError => "ERROR",
        ReplyTypeErrorOffset => "ERROR_OFFSET",
        _ => "unknown",
    };

    public static string ErrorName(uint error) => error switch
    {
        0 => "success",
        EPERM => "EPERM",
        EIO => "EIO",
        ENOMEM => "ENOMEM",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        EOVERFLOW => "EOVERFLOW",
        ENOTSUP => "ENOTSUP",
        ESHUTDOWN => "ESHUTDOWN",
        _ => "unknown",
    };
}
