using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>
/// The receive loop: reads reply headers, finds the waiting request by cookie, copies READ data straight
/// into the caller's buffer, records errors and extents, and completes the request on its last chunk.
/// Anything the protocol forbids ends the connection, as does EOF; then every waiting request fails.
/// </summary>
internal sealed partial class NbdClient
{
    /// <summary>Largest non-data chunk payload accepted (errors, holes, block status descriptors).</summary>
    private const int MaxMetadataPayload = 1024 * 1024;

    private byte[] _scratch = new byte[256];

    private async Task ReceiveLoopAsync()
    {
        Exception? cause = null;
        try
        {
            while (true)
            {
                var (header, more) = await ReadReplyHeaderAsync().ConfigureAwait(false);
                if (!more)
                {
                    break;
                }

                var r = Lookup(header.Cookie);
                if (header.IsSimple)
                {
                    await OnSimpleReplyAsync(r, header).ConfigureAwait(false);
                }
                else
                {
                    await OnChunkAsync(r, header).ConfigureAwait(false);
                }

                if (header.IsDone)
                {
                    Finish(r);
                }
            }
        }
        catch (Exception e)
        {
            cause = e;
        }
        finally
        {
            FailAll(cause);

            // After a protocol violation the server may still be there: hang up so no sender stays blocked.
            Abort();
            await _reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The next reply header; more=false at a clean end of stream between replies.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(NbdReplyHeader Header, bool More)> ReadReplyHeaderAsync()
    {
        while (true)
        {
            var result = await _reader.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = TryParseReplyHeader(buffer, out var header, out var size);
            if (status == NbdParseStatus.Ok)
            {
                _reader.AdvanceTo(buffer.GetPosition(size));
                return (header, true);
            }

            if (status == NbdParseStatus.BadMagic)
            {
                throw new NbdProtocolException("bad reply magic");
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                return buffer.IsEmpty ? (default, false) : throw new EndOfStreamException();
            }

            _reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static NbdParseStatus TryParseReplyHeader(in ReadOnlySequence<byte> buffer, out NbdReplyHeader header, out int size)
    {
        if (buffer.FirstSpan.Length >= NbdConstants.ExtendedReplyHeaderSize)
        {
            return NbdReplyCodec.TryParseHeader(buffer.FirstSpan, out header, out size);
        }

        Span<byte> copy = stackalloc byte[NbdConstants.ExtendedReplyHeaderSize];
        var n = (int)Math.Min(buffer.Length, copy.Length);
        buffer.Slice(0, n).CopyTo(copy);
        return NbdReplyCodec.TryParseHeader(copy[..n], out header, out size);
    }

    private NbdClientRequest Lookup(ulong cookie)
    {
        if (cookie >= MaxInFlight || !_requests[cookie].InUse)
        {
            throw new NbdProtocolException($"reply for unknown cookie {cookie}");
        }

        return _requests[cookie];
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnSimpleReplyAsync(NbdClientRequest r, NbdReplyHeader header)
    {
        if (header.Error != 0)
        {
            r.SetError(header.Error, null);
        }
        else if (r.Command == NbdConstants.CmdRead)
        {
            if (Info.StructuredReplies)
            {
                throw new NbdProtocolException("simple reply with data after structured replies were negotiated");
            }

            await _reader.ReadExactAsync(r.ReadBuffer, CancellationToken.None).ConfigureAwait(false);
            r.Covered = r.Length;
        }
        else if (r.Command == NbdConstants.CmdBlockStatus)
        {
            throw new NbdProtocolException("simple reply to BLOCK_STATUS without an error");
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnChunkAsync(NbdClientRequest r, NbdReplyHeader header)
    {
        if (!Info.StructuredReplies)
        {
            throw new NbdProtocolException("structured reply chunk without negotiation");
        }

        switch (header.Type)
        {
            case NbdConstants.ReplyTypeNone:
                if (header.Length != 0 || !header.IsDone)
                {
                    throw new NbdProtocolException("NONE chunk with a payload or without DONE");
                }

                break;
            case NbdConstants.ReplyTypeOffsetData:
                await OnOffsetDataAsync(r, header.Length).ConfigureAwait(false);
                break;
            case NbdConstants.ReplyTypeOffsetHole:
                OnOffsetHole(r, await ReadPayloadAsync(header.Length).ConfigureAwait(false));
                break;
            case NbdConstants.ReplyTypeBlockStatus or NbdConstants.ReplyTypeBlockStatusExt:
                OnBlockStatus(r, header.Type == NbdConstants.ReplyTypeBlockStatusExt, await ReadPayloadAsync(header.Length).ConfigureAwait(false));
                break;
            case var t when (t & 0x8000) != 0:
                var payload = await ReadPayloadAsync(header.Length).ConfigureAwait(false);
                if (!NbdReplyCodec.TryParseError(payload.Span, out var error, out var message))
                {
                    throw new NbdProtocolException("malformed error chunk");
                }

                r.SetError(error, message.IsEmpty ? null : Encoding.UTF8.GetString(message));
                break;
            default:
                throw new NbdProtocolException($"unknown reply chunk type {header.Type}");
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask OnOffsetDataAsync(NbdClientRequest r, ulong length)
    {
        if (r.Command != NbdConstants.CmdRead || length < NbdReplyCodec.OffsetDataPrefixSize)
        {
            throw new NbdProtocolException("OFFSET_DATA chunk not answering a READ");
        }

        var prefix = await ReadPayloadAsync(NbdReplyCodec.OffsetDataPrefixSize).ConfigureAwait(false);
        var offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(prefix.Span);
        var size = length - NbdReplyCodec.OffsetDataPrefixSize;
        var at = CheckChunkRange(r, offset, size);
        await _reader.ReadExactAsync(r.ReadBuffer.Slice(at, (int)size), CancellationToken.None).ConfigureAwait(false);
        r.Covered += size;
    }

    private static void OnOffsetHole(NbdClientRequest r, ReadOnlyMemory<byte> payload)
    {
        if (r.Command != NbdConstants.CmdRead || payload.Length != NbdReplyCodec.OffsetHolePayloadSize)
        {
            throw new NbdProtocolException("OFFSET_HOLE chunk malformed or not answering a READ");
        }

        NbdReplyCodec.ReadOffsetHole(payload.Span, out var offset, out var size);
        var at = CheckChunkRange(r, offset, size);
        r.ReadBuffer.Span.Slice(at, (int)size).Clear();
        r.Covered += size;
    }

    /// <summary>Where a data or hole chunk lands in the read buffer; it must lie inside the request.</summary>
    private static int CheckChunkRange(NbdClientRequest r, ulong offset, ulong size)
    {
        if (offset < r.Offset || size > r.Length || offset - r.Offset > r.Length - size)
        {
            throw new NbdProtocolException($"read chunk {offset}+{size} outside the request {r.Offset}+{r.Length}");
        }

        return (int)(offset - r.Offset);
    }

    private void OnBlockStatus(NbdClientRequest r, bool extended, ReadOnlyMemory<byte> payload)
    {
        if (r.Command != NbdConstants.CmdBlockStatus || extended != Info.ExtendedHeaders
            || !NbdReplyCodec.TryParseBlockStatusPrefix(payload.Span, extended, out var context, out _))
        {
            throw new NbdProtocolException("BLOCK_STATUS chunk malformed or not answering BLOCK_STATUS");
        }

        if (context != r.ContextId || r.HasExtent)
        {
            return;
        }

        NbdReplyCodec.ReadBlockStatusDescriptor(payload.Span, extended, 0, out var length, out var flags);
        if (length == 0)
        {
            throw new NbdProtocolException("BLOCK_STATUS extent of length 0");
        }

        r.Extent = new NbdExtent((long)Math.Min(length, r.Length), flags);
        r.HasExtent = true;
    }

    /// <summary>Reads a metadata payload into the loop's scratch buffer, valid until the next read.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReadOnlyMemory<byte>> ReadPayloadAsync(ulong length)
    {
        if (length > MaxMetadataPayload)
        {
            throw new NbdProtocolException($"chunk payload of {length} bytes is too large");
        }

        if (_scratch.Length < (int)length)
        {
            _scratch = new byte[Math.Max((int)length, _scratch.Length * 2)];
        }

        var memory = _scratch.AsMemory(0, (int)length);
        await _reader.ReadExactAsync(memory, CancellationToken.None).ConfigureAwait(false);
        return memory;
    }

    /// <summary>Completes a request on its last reply; a READ that succeeded must have been answered in full.</summary>
    private static void Finish(NbdClientRequest r)
    {
        if (r.Error == 0 && r.Command == NbdConstants.CmdRead && r.Covered != r.Length)
        {
            r.SetError(NbdConstants.EIO, $"the server answered {r.Covered} of {r.Length} bytes");
        }

        r.InUse = false;
        r.Complete();
    }

    /// <summary>Ends the connection: no request is registered from now on and every waiting one fails.</summary>
    private void FailAll(Exception? cause)
    {
        List<NbdClientRequest> waiting = new();
        BlockException failure;
        lock (_gate)
        {
            failure = _closing
                ? new BlockException(Errno.ESHUTDOWN, $"NBD connection to export '{ExportName}' is closed", cause)
                : BlockException.Io(
                    cause is null or EndOfStreamException
                        ? $"NBD server closed the connection to export '{ExportName}'"
                        : $"NBD connection to export '{ExportName}' lost: {cause.Message}",
                    cause);
            _failure = failure;
            foreach (var r in _requests)
            {
                if (r.InUse)
                {
                    r.InUse = false;
                    waiting.Add(r);
                }
            }
        }

        foreach (var r in waiting)
        {
            r.Fail(Failed(failure));
        }
    }
}
