using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>
/// The fixed newstyle handshake as QEMU's client does it: extended headers when the server takes them,
/// else structured replies; the base:allocation meta context; then GO asking for block sizes, or
/// EXPORT_NAME for a server that knows no GO (or is not fixed newstyle).
/// </summary>
internal sealed partial class NbdClient
{
    /// <summary>Option reply data larger than this is not a real server: the connection is dropped.</summary>
    private const int MaxOptionReplyLength = 64 * 1024;

    private const string BaseAllocation = "base:allocation";

    private async Task<NbdExportInfo> HandshakeAsync(NbdClientTls? tls, CancellationToken ct)
    {
        var greeting = new byte[NbdOptionCodec.GreetingSize];
        await _reader.ReadExactAsync(greeting, ct).ConfigureAwait(false);
        if (!NbdOptionCodec.TryParseGreeting(greeting, out var serverFlags))
        {
            throw BlockException.Io("The server is not an NBD newstyle server");
        }

        var fixedNewstyle = (serverFlags & NbdConstants.FlagFixedNewstyle) != 0;
        var noZeroes = (serverFlags & NbdConstants.FlagNoZeroes) != 0;
        var clientFlags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(
            clientFlags,
            (fixedNewstyle ? NbdConstants.ClientFlagFixedNewstyle : 0) | (noZeroes ? NbdConstants.ClientFlagNoZeroes : 0));
        await SendRawAsync(clientFlags, ct).ConfigureAwait(false);
        if (tls is not null)
        {
            await StartTlsAsync(tls, fixedNewstyle, ct).ConfigureAwait(false);
        }

        bool structured = false, extended = false;
        uint? baseAllocation = null;
        if (fixedNewstyle)
        {
            if (await SimpleOptionAsync(NbdConstants.OptExtendedHeaders, ct).ConfigureAwait(false))
            {
                structured = extended = true;
            }
            else
            {
                structured = await SimpleOptionAsync(NbdConstants.OptStructuredReply, ct).ConfigureAwait(false);
            }

            if (structured)
            {
                baseAllocation = await SetMetaContextAsync(ct).ConfigureAwait(false);
            }

            var go = await GoAsync(ct).ConfigureAwait(false);
            if (go is not null)
            {
                return go with { StructuredReplies = structured, ExtendedHeaders = extended, BaseAllocationId = baseAllocation };
            }
        }

        var (size, flags) = await ExportNameAsync(noZeroes, ct).ConfigureAwait(false);
        return new NbdExportInfo(size, flags, 0, 0, 0, structured, extended, baseAllocation);
    }

    private async ValueTask SendOptionAsync(uint option, byte[] data, CancellationToken ct)
    {
        var message = new byte[NbdConstants.OptionHeaderSize + data.Length];
        NbdOptionCodec.WriteOptionHeader(message, option, (uint)data.Length);
        data.CopyTo(message, NbdConstants.OptionHeaderSize);
        await SendRawAsync(message, ct).ConfigureAwait(false);
    }

    private async ValueTask<(NbdOptionReplyHeader Header, byte[] Data)> ReadOptionReplyAsync(uint option, CancellationToken ct)
    {
        var raw = new byte[NbdConstants.OptionReplyHeaderSize];
        await _reader.ReadExactAsync(raw, ct).ConfigureAwait(false);
        if (NbdOptionCodec.TryParseOptionReplyHeader(raw, out var header) != NbdParseStatus.Ok)
        {
            throw BlockException.Io("NBD handshake: bad option reply magic");
        }

        if (header.Option != option)
        {
            throw BlockException.Io(
                $"NBD handshake: reply for option {NbdConstants.OptionName(header.Option)} while waiting for {NbdConstants.OptionName(option)}");
        }

        if (header.Length > MaxOptionReplyLength)
        {
            throw BlockException.Io($"NBD handshake: option reply of {header.Length} bytes is too large");
        }

        var data = new byte[header.Length];
        await _reader.ReadExactAsync(data, ct).ConfigureAwait(false);
        return (header, data);
    }

    /// <summary>An option without data that the server answers with ACK or an error; true for ACK.</summary>
    private async ValueTask<bool> SimpleOptionAsync(uint option, CancellationToken ct)
    {
        await SendOptionAsync(option, [], ct).ConfigureAwait(false);
        var (header, _) = await ReadOptionReplyAsync(option, ct).ConfigureAwait(false);
        if (!header.IsError && header.Type != NbdConstants.RepAck)
        {
            throw UnexpectedReply(option, header.Type);
        }

        return header.Type == NbdConstants.RepAck;
    }

    /// <summary>Asks for base:allocation; the id the server gave it, or null when it has none.</summary>
    private async ValueTask<uint?> SetMetaContextAsync(CancellationToken ct)
    {
        await SendOptionAsync(NbdConstants.OptSetMetaContext, NbdOptionCodec.MetaContextRequest(ExportName, [BaseAllocation]), ct)
            .ConfigureAwait(false);
        uint? id = null;
        while (true)
        {
            var (header, data) = await ReadOptionReplyAsync(NbdConstants.OptSetMetaContext, ct).ConfigureAwait(false);
            switch (header.Type)
            {
                case NbdConstants.RepMetaContext:
                    if (!NbdOptionCodec.TryParseMetaContextReply(data, out var contextId, out var name))
                    {
                        throw BlockException.Io("NBD handshake: malformed META_CONTEXT reply");
                    }

                    if (name == BaseAllocation)
                    {
                        id = contextId;
                    }

                    break;
                case NbdConstants.RepAck:
                    return id;
                default:
                    // A server that refuses meta contexts leaves block status unavailable, nothing more.
                    return header.IsError ? null : throw UnexpectedReply(NbdConstants.OptSetMetaContext, header.Type);
            }
        }
    }

    /// <summary>NBD_OPT_GO asking for block sizes; null when the server does not know GO.</summary>
    private async ValueTask<NbdExportInfo?> GoAsync(CancellationToken ct)
    {
        await SendOptionAsync(NbdConstants.OptGo, NbdOptionCodec.InfoRequest(ExportName, [NbdConstants.InfoBlockSize]), ct)
            .ConfigureAwait(false);
        ulong? size = null;
        ushort flags = 0;
        uint min = 0, preferred = 0, max = 0;
        while (true)
        {
            var (header, data) = await ReadOptionReplyAsync(NbdConstants.OptGo, ct).ConfigureAwait(false);
            if (header.Type == NbdConstants.RepErrUnsup)
            {
                return null;
            }

            if (header.IsError)
            {
                throw OptionError(header.Type, data);
            }

            if (header.Type == NbdConstants.RepAck)
            {
                if (size is null)
                {
                    throw BlockException.Io("NBD handshake: the server sent no export information");
                }

                return new NbdExportInfo(size.Value, flags, min, preferred, max, false, false, null);
            }

            if (header.Type != NbdConstants.RepInfo || data.Length < 2)
            {
                throw UnexpectedReply(NbdConstants.OptGo, header.Type);
            }

            var ok = BinaryPrimitives.ReadUInt16BigEndian(data) switch
            {
                NbdConstants.InfoExport => ParseInfoExport(data, ref size, ref flags),
                NbdConstants.InfoBlockSize => NbdOptionCodec.TryParseInfoBlockSize(data, out min, out preferred, out max),
                _ => true,
            };
            if (!ok)
            {
                throw BlockException.Io("NBD handshake: malformed INFO reply");
            }
        }
    }

    private static bool ParseInfoExport(byte[] data, ref ulong? size, ref ushort flags)
    {
        if (!NbdOptionCodec.TryParseInfoExport(data, out var s, out flags))
        {
            return false;
        }

        size = s;
        return true;
    }

    private async ValueTask<(ulong Size, ushort Flags)> ExportNameAsync(bool noZeroes, CancellationToken ct)
    {
        await SendOptionAsync(NbdConstants.OptExportName, Encoding.UTF8.GetBytes(ExportName), ct).ConfigureAwait(false);
        var reply = new byte[10 + (noZeroes ? 0 : NbdOptionCodec.ExportNameReplyZeroes)];
        try
        {
            await _reader.ReadExactAsync(reply, ct).ConfigureAwait(false);
        }
        catch (EndOfStreamException e)
        {
            throw new BlockException(Errno.ENOENT, $"Requested export '{ExportName}' not available", e);
        }

        NbdOptionCodec.ReadExportNameReply(reply, out var size, out var flags);
        return (size, flags);
    }

    private BlockException OptionError(uint replyType, byte[] data)
    {
        var message = data.Length > 0 ? Encoding.UTF8.GetString(data) : NbdConstants.ReplyName(replyType);
        return replyType switch
        {
            NbdConstants.RepErrUnknown => new BlockException(Errno.ENOENT, $"Requested export '{ExportName}' not available: {message}"),
            NbdConstants.RepErrPolicy or NbdConstants.RepErrTlsReqd => new BlockException(Errno.EPERM, $"NBD server refused export '{ExportName}': {message}"),
            _ => BlockException.Io($"NBD server refused export '{ExportName}': {message}"),
        };
    }

    private static BlockException UnexpectedReply(uint option, uint replyType) =>
        BlockException.Io($"NBD handshake: unexpected reply {NbdConstants.ReplyName(replyType)} to option {NbdConstants.OptionName(option)}");
}
