using System.Buffers.Binary;
using System.Text;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>The handshake: fixed newstyle option haggling until EXPORT_NAME, GO or ABORT.</summary>
internal sealed partial class NbdConnection
{
    /// <summary>Option data larger than this is not a real client: the connection is dropped.</summary>
    private const int MaxOptionLength = 64 * 1024;

    private static readonly UTF8Encoding s_strictUtf8 = new(false, true);

    private bool _fixedNewstyle;
    private bool _noZeroes;
    private bool _structured;
    private bool _extended;
    private string? _metaExportName;
    private List<(int Id, NbdMetaContext Context)> _meta = new();

    /// <summary>Returns true when an export was selected and transmission begins; false after ABORT.</summary>
    private async Task<bool> HandshakeAsync()
    {
        var limit = _server.Options.HandshakeLimit;
        using var timeout = new CancellationTokenSource();
        var ct = timeout.Token;
        var greeting = new byte[NbdOptionCodec.GreetingSize];
        NbdOptionCodec.WriteGreeting(greeting, NbdConstants.FlagFixedNewstyle | NbdConstants.FlagNoZeroes);
        await SendAsync(greeting, ct).ConfigureAwait(false);

        // The limit runs from the greeting: 18 bytes always fit the socket's buffer, and arming the
        // timer first would start the runtime's timer thread ahead of a new daemon's first greeting.
        if (limit > TimeSpan.Zero)
        {
            timeout.CancelAfter(limit);
        }

        var word = new byte[4];
        await ReadExactAsync(word, ct).ConfigureAwait(false);
        var clientFlags = BinaryPrimitives.ReadUInt32BigEndian(word);
        if ((clientFlags & ~(NbdConstants.ClientFlagFixedNewstyle | NbdConstants.ClientFlagNoZeroes)) != 0)
        {
            throw new NbdProtocolException($"unknown client flags 0x{clientFlags:x}");
        }

        _fixedNewstyle = (clientFlags & NbdConstants.ClientFlagFixedNewstyle) != 0;
        _noZeroes = (clientFlags & NbdConstants.ClientFlagNoZeroes) != 0;

        var header = new byte[NbdConstants.OptionHeaderSize];
        while (true)
        {
            await ReadExactAsync(header, ct).ConfigureAwait(false);
            if (NbdOptionCodec.TryParseOptionHeader(header, out var opt) != NbdParseStatus.Ok)
            {
                throw new NbdProtocolException("bad option magic");
            }

            NbdLog.Option(_log, Id, opt.Option, NbdConstants.OptionName(opt.Option), opt.Length);
            if (opt.Length > MaxOptionLength)
            {
                throw new NbdProtocolException($"option {NbdConstants.OptionName(opt.Option)} length {opt.Length} is too large");
            }

            var data = new byte[opt.Length];
            await ReadExactAsync(data, ct).ConfigureAwait(false);
            if (!_fixedNewstyle && opt.Option != NbdConstants.OptExportName)
            {
                throw new NbdProtocolException("option other than EXPORT_NAME from a client without fixed newstyle");
            }

            if (_server.Options.TlsCredentials is not null && _tls is null && opt.Option != NbdConstants.OptStartTls)
            {
                // Before STARTTLS nothing but STARTTLS is served, as QEMU does: EXPORT_NAME cannot be
                // answered with an error, so it ends the connection; ABORT is answered and ends it too.
                var refusal = $"Option 0x{opt.Option:x} not permitted before TLS";
                if (opt.Option == NbdConstants.OptExportName)
                {
                    throw new NbdProtocolException(refusal);
                }

                await RefuseAsync(opt.Option, NbdConstants.RepErrTlsReqd, refusal, ct).ConfigureAwait(false);
                if (opt.Option == NbdConstants.OptAbort)
                {
                    return false;
                }

                continue;
            }

            switch (opt.Option)
            {
                case NbdConstants.OptExportName:
                    return await ExportNameAsync(data, ct).ConfigureAwait(false);
                case NbdConstants.OptAbort:
                    await ReplyAbortAsync(ct).ConfigureAwait(false);
                    return false;
                case NbdConstants.OptList:
                    await ListAsync(data, ct).ConfigureAwait(false);
                    break;
                case NbdConstants.OptStartTls:
                    await StartTlsAsync(data, ct).ConfigureAwait(false);
                    break;
                case NbdConstants.OptInfo:
                case NbdConstants.OptGo:
                    if (await InfoAsync(opt.Option, data, ct).ConfigureAwait(false))
                    {
                        return true;
                    }

                    break;
                case NbdConstants.OptStructuredReply:
                case NbdConstants.OptExtendedHeaders:
                    await NegotiateRepliesAsync(opt.Option, data, ct).ConfigureAwait(false);
                    break;
                case NbdConstants.OptListMetaContext:
                case NbdConstants.OptSetMetaContext:
                    await MetaContextAsync(opt.Option, data, ct).ConfigureAwait(false);
                    break;
                default:
                    await RefuseAsync(opt.Option, NbdConstants.RepErrUnsup, $"option {opt.Option} not supported", ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    private async Task ReplyAbortAsync(CancellationToken ct)
    {
        try
        {
            await ReplyAsync(NbdConstants.OptAbort, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            // The client may drop the connection without waiting for the acknowledgement.
        }

        NbdLog.Disconnected(_log, Id, "ABORT");
    }

    /// <summary>Old-style export selection: the export must exist, since no error can be returned.</summary>
    private async Task<bool> ExportNameAsync(byte[] data, CancellationToken ct)
    {
        string name;
        try
        {
            name = s_strictUtf8.GetString(data);
        }
        catch (DecoderFallbackException)
        {
            throw new NbdProtocolException("export name is not UTF-8");
        }

        var export = _server.FindExport(name);
        if (export is null || !Select(export))
        {
            throw new NbdProtocolException($"EXPORT_NAME for unknown export '{name}'");
        }

        var reply = new byte[10 + NbdOptionCodec.ExportNameReplyZeroes];
        var n = NbdOptionCodec.WriteExportNameReply(reply, (ulong)export.Options.Node.Length, TransmissionFlags, _noZeroes);
        await SendAsync(reply.AsMemory(0, n), ct).ConfigureAwait(false);
        return true;
    }

    private async Task ListAsync(byte[] data, CancellationToken ct)
    {
        if (data.Length != 0)
        {
            await RefuseAsync(NbdConstants.OptList, NbdConstants.RepErrInvalid, "LIST takes no data", ct).ConfigureAwait(false);
            return;
        }

        foreach (var e in _server.ExportList)
        {
            await ReplyAsync(NbdConstants.OptList, NbdConstants.RepServer, NbdOptionCodec.ServerReply(e.Name, e.Options.Description), ct).ConfigureAwait(false);
        }

        await ReplyAsync(NbdConstants.OptList, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
    }

    /// <summary>INFO and GO: describe the export; GO then enters transmission (returns true).</summary>
    private async Task<bool> InfoAsync(uint option, byte[] data, CancellationToken ct)
    {
        if (!NbdOptionCodec.TryParseInfoRequest(data, out var name, out var infos))
        {
            await RefuseAsync(option, NbdConstants.RepErrInvalid, "malformed INFO/GO request", ct).ConfigureAwait(false);
            return false;
        }

        var export = _server.FindExport(name);
        if (export is null)
        {
            await RefuseAsync(option, NbdConstants.RepErrUnknown, $"export '{name}' not present", ct).ConfigureAwait(false);
            return false;
        }

        var node = export.Options.Node;
        var wantsBlockSize = false;
        foreach (var info in infos)
        {
            switch (info)
            {
                case NbdConstants.InfoName:
                    await ReplyAsync(option, NbdConstants.RepInfo, NbdOptionCodec.InfoString(NbdConstants.InfoName, export.Name), ct).ConfigureAwait(false);
                    break;
                case NbdConstants.InfoDescription when export.Options.Description is not null:
                    await ReplyAsync(option, NbdConstants.RepInfo, NbdOptionCodec.InfoString(NbdConstants.InfoDescription, export.Options.Description), ct).ConfigureAwait(false);
                    break;
                case NbdConstants.InfoBlockSize:
                    wantsBlockSize = true;
                    break;
            }
        }

        // Like QEMU: a client that cannot honour block sizes gets minimum 1 (the node does read-modify-write);
        // one that asks, or is only inquiring, learns the node's real request alignment.
        var minimum = wantsBlockSize || option == NbdConstants.OptInfo ? (uint)Math.Max(node.Limits.RequestAlignment, 1) : 1u;
        var preferred = Math.Max(4096u, minimum);
        var maximum = Math.Max((uint)NbdConstants.MaxPayloadSize, preferred);
        var blockSize = new byte[NbdOptionCodec.InfoBlockSizeSize];
        NbdOptionCodec.WriteInfoBlockSize(blockSize, minimum, preferred, maximum);
        await ReplyAsync(option, NbdConstants.RepInfo, blockSize, ct).ConfigureAwait(false);

        var exportInfo = new byte[NbdOptionCodec.InfoExportSize];
        NbdOptionCodec.WriteInfoExport(exportInfo, (ulong)node.Length, export.TransmissionFlags(_structured));
        await ReplyAsync(option, NbdConstants.RepInfo, exportInfo, ct).ConfigureAwait(false);

        if (option == NbdConstants.OptGo && !Select(export))
        {
            await RefuseAsync(option, NbdConstants.RepErrUnknown, $"export '{name}' is being removed", ct).ConfigureAwait(false);
            return false;
        }

        await ReplyAsync(option, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
        return option == NbdConstants.OptGo;
    }

    /// <summary>Binds the connection to the export; contexts chosen for another export are dropped.</summary>
    private bool Select(NbdExport export)
    {
        if (!export.TryAttach(this))
        {
            return false;
        }

        _export = export;
        if (_metaExportName != export.Name)
        {
            _meta = new();
        }

        NbdLog.ExportSelected(_log, Id, export.Name, export.Options.Node.Length, TransmissionFlags, _structured, _extended);
        return true;
    }

    private ushort TransmissionFlags => _export!.TransmissionFlags(_structured);

    private async Task NegotiateRepliesAsync(uint option, byte[] data, CancellationToken ct)
    {
        var extended = option == NbdConstants.OptExtendedHeaders;
        if (data.Length != 0)
        {
            await RefuseAsync(option, NbdConstants.RepErrInvalid, "option takes no data", ct).ConfigureAwait(false);
        }
        else if (_extended)
        {
            await RefuseAsync(option, extended ? NbdConstants.RepErrInvalid : NbdConstants.RepErrExtHeaderReqd, "extended headers already negotiated", ct).ConfigureAwait(false);
        }
        else if (_structured && !extended)
        {
            await RefuseAsync(option, NbdConstants.RepErrInvalid, "structured replies already negotiated", ct).ConfigureAwait(false);
        }
        else
        {
            await ReplyAsync(option, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
            _structured = true;
            _extended = extended;
        }
    }

    private async Task MetaContextAsync(uint option, byte[] data, CancellationToken ct)
    {
        var list = option == NbdConstants.OptListMetaContext;
        if (!_structured)
        {
            await RefuseAsync(option, NbdConstants.RepErrInvalid, "request structured replies first", ct).ConfigureAwait(false);
            return;
        }

        if (!NbdOptionCodec.TryParseMetaContextRequest(data, out var name, out var queries))
        {
            await RefuseAsync(option, NbdConstants.RepErrInvalid, "malformed meta context request", ct).ConfigureAwait(false);
            return;
        }

        if (!list)
        {
            _meta = new();
            _metaExportName = null;
        }

        var export = _server.FindExport(name);
        if (export is null)
        {
            await RefuseAsync(option, NbdConstants.RepErrUnknown, $"export '{name}' not present", ct).ConfigureAwait(false);
            return;
        }

        var matches = NbdMetaContextQuery.Match(export.MetaContexts, queries, list);
        foreach (var (id, context) in matches)
        {
            await ReplyAsync(option, NbdConstants.RepMetaContext, NbdOptionCodec.MetaContextReply((uint)id, context.Name), ct).ConfigureAwait(false);
        }

        if (!list)
        {
            _meta = matches;
            _metaExportName = name;
        }

        await ReplyAsync(option, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
    }

    private async Task RefuseAsync(uint option, uint reply, string message, CancellationToken ct)
    {
        NbdLog.OptionRefused(_log, Id, option, NbdConstants.OptionName(option), NbdConstants.ReplyName(reply), message);
        await ReplyAsync(option, reply, Encoding.UTF8.GetBytes(message), ct).ConfigureAwait(false);
    }

    private async Task ReplyAsync(uint option, uint reply, byte[] data, CancellationToken ct)
    {
        var message = new byte[NbdConstants.OptionReplyHeaderSize + data.Length];
        NbdOptionCodec.WriteOptionReplyHeader(message, option, reply, (uint)data.Length);
        data.CopyTo(message, NbdConstants.OptionReplyHeaderSize);
        await SendAsync(message, ct).ConfigureAwait(false);
    }
}
