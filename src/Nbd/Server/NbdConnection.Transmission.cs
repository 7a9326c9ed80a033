using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using ExportServer.Block.Exports;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>
/// The transmission phase: one receive loop parses and validates requests, reads WRITE payloads into
/// pooled buffers and starts each request on the spot; requests build complete replies for the sender.
/// </summary>
internal sealed partial class NbdConnection : BlockingAllowed.IGate, CompletionBatch.IFlush
{
    /// <summary>Requests of one connection processed at once; the receive loop waits for a free slot.</summary>
    private const int MaxInFlight = 64;

    /// <summary>A refused WRITE payload up to this size is read and dropped; a larger one ends the connection.</summary>
    private const ulong MaxDiscardedPayload = 256 * 1024 * 1024;

    /// <summary>
    /// A WRITE payload at least this large is followed by a read of the next request header alone (see
    /// <see cref="ReceiveStream"/>); the pipe's 128 KiB buffer would otherwise take in part of the next
    /// payload. Below it, reading ahead into the pipe saves more receive calls than the copy costs.
    /// </summary>
    private const ulong HeaderOnlyAfterPayload = 64 * 1024;

    private static readonly Action<object?> s_execute = static s => ((NbdRequestSlot)s!).Execute();

    private async Task TransmissionAsync()
    {
        // Fewer slots when the export's storage says a deeper queue does not pay (see BlockNode.RequestsWorthQueuing):
        // those beyond it stay taken for good.
        var worth = _export!.Options.Node.RequestsWorthQueuing;
        while (worth > 0 && _slots.Free > worth)
        {
            _ = _slots.TryTake();
        }

        _maxInFlight = _slots.Free;
        try
        {
            await ReceiveLoopAsync().ConfigureAwait(false);
        }
        finally
        {
            // Every slot back means every request was answered (or its reply dropped): safe to close.
            for (var i = 0; i < _maxInFlight; i++)
            {
                await _slots.TakeAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        _budgetAccount.Limit = _export!.Options.Node.IsRemote ? NbdByteBudget.RemoteLimit : 0;
        while (true)
        {
            if (!_reader.TryRead(out var result))
            {
                var waitStart = PollForRequest();
                result = await _reader.ReadAsync().ConfigureAwait(false);
                if (waitStart != 0)
                {
                    _poll.Adjust(_export!.Options.Polling, AdaptivePoll.ElapsedNs(waitStart, Stopwatch.GetTimestamp()));
                }
            }

            var buffer = result.Buffer;
            var status = NbdRequestCodec.TryParse(buffer, _extended, out var request, out var consumed);
            if (status == NbdParseStatus.Incomplete)
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    if (!buffer.IsEmpty)
                    {
                        throw new NbdProtocolException("connection closed inside a request header");
                    }

                    NbdLog.Disconnected(_log, Id, "end of stream without DISC");
                    return;
                }

                continue;
            }

            if (status == NbdParseStatus.BadMagic)
            {
                _reader.AdvanceTo(buffer.Start);
                throw new NbdProtocolException("bad request magic");
            }

            _reader.AdvanceTo(consumed);
            if (request.Type == NbdConstants.CmdDisc)
            {
                NbdLog.Disconnected(_log, Id, "DISC");
                return;
            }

            var error = Validate(request, out var message);
            var payload = request.Type == NbdConstants.CmdWrite ? request.Length : 0;
            if (payload > MaxDiscardedPayload)
            {
                throw new NbdProtocolException($"WRITE payload of {payload} bytes");
            }

            await _slots.TakeAsync().ConfigureAwait(false);
            _free.TryDequeue(out var slot);
            slot!.Request = request;
            var data = error != 0 ? 0 : request.Type switch
            {
                NbdConstants.CmdWrite => (long)payload,
                NbdConstants.CmdRead => (long)request.Length,
                _ => 0,
            };
            if (data > 0)
            {
                await _server.Budget.AcquireAsync(_budgetAccount, data).ConfigureAwait(false);
                slot.Budgeted = data;
            }

            try
            {
                if (payload > 0 && error == 0)
                {
                    slot.Payload = NbdBuffers.Pool.Rent((int)payload);
                    slot.PayloadLength = (int)payload;
                    var destination = slot.Payload.AsMemory(0, (int)payload);
                    if (_receiveStream is { } plain)
                    {
                        // What a poll took in went into the pipe with the header's read; the rest comes from the socket.
                        Debug.Assert(!plain.HasEarlyBytes, "bytes received early were left out of the pipe");
                        await _reader.ReadExactAsync(_socket, destination, CancellationToken.None).ConfigureAwait(false);
                        if (payload >= HeaderOnlyAfterPayload)
                        {
                            // The payload's end came straight from the socket: the next header is read alone (see ReceiveStream).
                            plain.LimitNextRead(_extended ? NbdConstants.ExtendedRequestHeaderSize : NbdConstants.RequestHeaderSize);
                        }
                    }
                    else
                    {
                        await _reader.ReadExactAsync(destination, CancellationToken.None).ConfigureAwait(false);
                    }
                }
                else if (payload > 0)
                {
                    await SkipAsync(payload).ConfigureAwait(false);
                }
            }
            catch
            {
                ReturnPayload(slot);
                Release(slot);
                throw;
            }

            if (error != 0)
            {
                NbdLog.RequestFailed(_log, Id, request.Type, NbdConstants.CommandName(request.Type), request.Flags, request.Offset, request.Length, NbdConstants.ErrorName(error), message);
                ReplyError(slot, request, error, message);
                continue;
            }

            var scheduler = _export!.Options.Scheduler;
            if (scheduler is null)
            {
                // Run on the receive loop up to the request's first real wait: a read served from the
                // page cache is answered here, without handing it to another thread (see SocketEventLoop).
                // The only request of the server's only connection may even wait for the device here:
                // the thread has nothing else to serve, and the client waits for this reply. Not on a
                // completion thread (see ReceiveLoopWaiter), whose next completions would wait too.
                if (IsAloneWith(inFlight: 1) && !CompletionBatch.Running)
                {
                    using (BlockingAllowed.Enter(this))
                    {
                        _ = ProcessAsync(slot);
                    }
                }
                else
                {
                    _ = ProcessAsync(slot);
                }
            }
            else
            {
                _ = Task.Factory.StartNew(s_execute, slot, CancellationToken.None, TaskCreationOptions.DenyChildAttach, scheduler);
            }
        }
    }

    /// <summary>
    /// Before the receive loop waits for more of the request stream: a connection that is the server's
    /// only one and has nothing in flight first busy-polls its socket for up to the adaptive poll time (see <see cref="RequestPolling"/>):
    /// a client sending one request at a time then finds this thread awake, with no wake-up on either
    /// side. With other connections no connection polls, as a poll holds up the event thread they share;
    /// nor while requests are in flight, whose completions need the CPU. Returns when the wait began
    /// (0 when the connection does not poll), for the loop to adjust the poll time when the wait ends.
    /// </summary>
    private long PollForRequest()
    {
        var policy = _export!.Options.Polling;
        if (_tls is not null || policy.MaxNs <= 0 || !IsAloneWith(inFlight: 0) || CompletionBatch.Running)
        {
            return 0;
        }

        var start = Stopwatch.GetTimestamp();
        if (_poll.Ns > 0)
        {
            PollSocket(start + (_poll.Ns * Stopwatch.Frequency / 1_000_000_000));
        }

        return start;
    }

    /// <summary>
    /// Asked by a driver about to wait for the device while a request runs on the receive loop (see
    /// <see cref="BlockingAllowed"/>): whether that request is still the only one the server has. Its
    /// connection is the only one, nothing else of it is in flight and no further request is waiting,
    /// neither read ahead nor in the socket (a client with two requests in flight must not wait behind
    /// the first one's device wait).
    /// </summary>
    bool BlockingAllowed.IGate.MayBlock
    {
        get
        {
            if (!IsAloneWith(inFlight: 1))
            {
                return false;
            }

            if (_reader.TryRead(out var ahead))
            {
                var empty = ahead.Buffer.IsEmpty;
                _reader.AdvanceTo(ahead.Buffer.Start);
                if (!empty)
                {
                    return false;
                }
            }

            try
            {
                return _socket.Available == 0;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>Whether this is the server's only connection and has exactly <paramref name="inFlight"/> requests in flight.</summary>
    private bool IsAloneWith(int inFlight) => _server.ConnectionCount == 1 && _slots.Free == _maxInFlight - inFlight;

    private void PollSocket(long until)
    {
        try
        {
            // On a plain connection the receive itself polls once the first look found nothing: the call
            // that finds the request takes it in. What is there at the first look (a client keeping many
            // requests in flight) the pipe takes in with one large read instead, as the receives here
            // take a few KiB.
            if (_receiveStream is { } plain)
            {
                if (_socket.Poll(0, SelectMode.SelectRead))
                {
                    return;
                }

                while (!plain.TryReceiveNow() && Stopwatch.GetTimestamp() < until)
                {
                }

                return;
            }

            while (!_socket.Poll(0, SelectMode.SelectRead) && Stopwatch.GetTimestamp() < until)
            {
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The receive that follows reports the closed socket.
        }
    }

    /// <summary>Checks a request before any work: returns 0, or the wire error and a message for the client.</summary>
    private uint Validate(in NbdRequest r, out string message)
    {
        var export = _export!;
        var isWrite = r.Type is NbdConstants.CmdWrite or NbdConstants.CmdTrim or NbdConstants.CmdWriteZeroes;
        ushort allowed = NbdConstants.CmdFlagFua;
        switch (r.Type)
        {
            case NbdConstants.CmdRead:
                if (_structured)
                {
                    allowed |= NbdConstants.CmdFlagDf;
                }

                break;
            case NbdConstants.CmdWriteZeroes:
                allowed |= NbdConstants.CmdFlagNoHole;
                if ((export.TransmissionFlags(_structured) & NbdConstants.FlagSendFastZero) != 0)
                {
                    allowed |= NbdConstants.CmdFlagFastZero;
                }

                break;
            case NbdConstants.CmdBlockStatus:
                allowed |= NbdConstants.CmdFlagReqOne;
                break;
            case NbdConstants.CmdWrite or NbdConstants.CmdFlush or NbdConstants.CmdTrim or NbdConstants.CmdCache:
                break;
            default:
                message = $"unsupported command {r.Type}";
                return NbdConstants.EINVAL;
        }

        if ((r.Flags & ~allowed) != 0)
        {
            message = $"unsupported flags 0x{r.Flags & ~allowed:x} for {NbdConstants.CommandName(r.Type)}";
            return NbdConstants.EINVAL;
        }

        if (r.Type is NbdConstants.CmdRead or NbdConstants.CmdWrite && r.Length > NbdConstants.MaxPayloadSize)
        {
            message = $"request length {r.Length} exceeds the maximum of {NbdConstants.MaxPayloadSize}";
            return _structured ? NbdConstants.EOVERFLOW : NbdConstants.EINVAL;
        }

        if (r.Type == NbdConstants.CmdFlush)
        {
            message = string.Empty;
            return 0;
        }

        if (r.Length == 0 && r.Type == NbdConstants.CmdBlockStatus)
        {
            message = "need non-zero length";
            return NbdConstants.EINVAL;
        }

        if (isWrite && !export.Writable)
        {
            message = "export is read-only";
            return NbdConstants.EPERM;
        }

        var size = (ulong)export.Options.Node.Length;
        if (r.Offset > size || r.Length > size - r.Offset)
        {
            message = $"request [{r.Offset}, +{r.Length}) beyond end of export ({size} bytes)";
            return isWrite ? NbdConstants.ENOSPC : NbdConstants.EINVAL;
        }

        if (r.Type == NbdConstants.CmdBlockStatus && _meta.Count == 0)
        {
            message = "no metadata context selected";
            return NbdConstants.EINVAL;
        }

        message = string.Empty;
        return 0;
    }

    /// <summary>Runs one request to its reply; never throws. The slot must not be touched after the reply is queued.</summary>
    internal async Task ProcessAsync(NbdRequestSlot slot)
    {
        // Awaits here deliberately keep the current TaskScheduler, so an export's iothread scheduler
        // runs the whole request, not only its first step.
        var request = slot.Request;
        var payload = slot.Payload;
        var payloadLength = slot.PayloadLength;
        slot.Payload = null;
        var node = _export!.Options.Node;
        var offset = (long)request.Offset;
        var fua = (request.Flags & NbdConstants.CmdFlagFua) != 0;
        try
        {
            if (request.Length == 0 && request.Type != NbdConstants.CmdFlush)
            {
                // As in QEMU, an empty read, write, trim, zero or cache succeeds without reaching the node.
                ReplyOk(slot, request);
                return;
            }

            switch (request.Type)
            {
                case NbdConstants.CmdRead:
                    await ReadAsync(slot, request, node);
                    return;
                case NbdConstants.CmdBlockStatus:
                    await BlockStatusAsync(slot, request, node);
                    return;
                case NbdConstants.CmdWrite:
                    await node.WriteAsync(offset, payload.AsMemory(0, payloadLength), fua ? WriteFlags.Fua : WriteFlags.None);
                    break;
                case NbdConstants.CmdFlush:
                    await node.FlushAsync();
                    break;
                case NbdConstants.CmdTrim:
                    await node.DiscardAsync(offset, (long)request.Length);
                    if (fua)
                    {
                        await node.FlushAsync();
                    }

                    break;
                case NbdConstants.CmdWriteZeroes:
                    await node.WriteZeroesAsync(offset, (long)request.Length, ZeroFlagsOf(request.Flags));
                    break;
                case NbdConstants.CmdCache:
                    // Advisory: the nodes keep no cache that prefetching would fill.
                    break;
            }

            ReplyOk(slot, request);
        }
        catch (Exception e)
        {
            var error = NbdErrno.FromException(e);
            if (e is not BlockException)
            {
                NbdLog.RequestCrashed(_log, Id, request.Type, NbdConstants.CommandName(request.Type), e);
            }

            NbdLog.RequestFailed(_log, Id, request.Type, NbdConstants.CommandName(request.Type), request.Flags, request.Offset, request.Length, NbdConstants.ErrorName(error), e.Message);
            ReplyError(slot, request, error, e.Message);
        }
        finally
        {
            if (payload is not null)
            {
                NbdBuffers.Pool.Return(payload);
            }
        }
    }

    private static ZeroFlags ZeroFlagsOf(ushort flags)
    {
        var z = (flags & NbdConstants.CmdFlagNoHole) != 0 ? ZeroFlags.None : ZeroFlags.MayUnmap;
        if ((flags & NbdConstants.CmdFlagFastZero) != 0)
        {
            z |= ZeroFlags.NoFallback;
        }

        if ((flags & NbdConstants.CmdFlagFua) != 0)
        {
            z |= ZeroFlags.Fua;
        }

        return z;
    }

    private static void ReturnPayload(NbdRequestSlot slot)
    {
        if (slot.Payload is not null)
        {
            NbdBuffers.Pool.Return(slot.Payload);
            slot.Payload = null;
        }
    }
}
