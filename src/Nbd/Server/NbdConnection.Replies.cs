using System.Buffers;
using System.Net.Sockets;
using System.Text;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>
/// Replies: each is built complete in one pooled buffer (headers and data read in place), queued, and sent
/// by whichever thread finds the send side free, gathering all queued replies into one send. Chunks of one reply are
/// therefore always contiguous on the wire.
/// </summary>
internal sealed partial class NbdConnection
{
    /// <summary>Most content chunks in a sparse READ reply; the rest of the range goes as data.</summary>
    private const int MaxReadChunks = 256;

    /// <summary>Most descriptors per context in a BLOCK_STATUS reply.</summary>
    private const int MaxStatusExtents = 16384;

    /// <summary>The writer stops gathering more replies into one send beyond this many bytes.</summary>
    private const int MaxBatchBytes = 4 * 1024 * 1024;

    /// <summary>Over TLS, a batch up to this size is copied into one write (see SendTlsAsync).</summary>
    private const int MaxGatheredTlsBytes = 256 * 1024;

    /// <summary>
    /// A READ of at least this many bytes whose data lies in the page cache of a file (see
    /// <see cref="FileExtent"/>) is sent from there with sendfile, sparing the copy into a buffer
    /// (and over TCP the copy into the socket as well). Below it the copies cost less than the
    /// extra system calls.
    /// </summary>
    private const int MinFileExtentRead = 64 * 1024;

    /// <summary>When the socket is full in the middle of a file extent, this much of it goes through memory (see SendExtentAsync).</summary>
    private const int ExtentCopyChunk = 64 * 1024;

    private void ReplyOk(NbdRequestSlot slot, in NbdRequest request)
    {
        // A read (only an empty one ends here) gets a structured reply once they are negotiated.
        if (_extended || (_structured && request.Type == NbdConstants.CmdRead))
        {
            var buffer = NbdBuffers.Pool.Rent(NbdReplyCodec.ChunkHeaderSize(_extended));
            var n = NbdReplyCodec.WriteChunkHeader(buffer, _extended, NbdConstants.ReplyFlagDone, NbdConstants.ReplyTypeNone, request.Cookie, request.Offset, 0);
            Queue(slot, buffer, n);
        }
        else
        {
            var buffer = NbdBuffers.Pool.Rent(NbdConstants.SimpleReplySize);
            Queue(slot, buffer, NbdReplyCodec.WriteSimple(buffer, 0, request.Cookie));
        }
    }

    /// <summary>A simple reply carrying the error, or with structured replies an ERROR chunk with a message.</summary>
    private void ReplyError(NbdRequestSlot slot, in NbdRequest request, uint error, string message)
    {
        if (!_structured)
        {
            var simple = NbdBuffers.Pool.Rent(NbdConstants.SimpleReplySize);
            Queue(slot, simple, NbdReplyCodec.WriteSimple(simple, error, request.Cookie));
            return;
        }

        if (message.Length > 512)
        {
            message = message[..512];
        }

        var text = Encoding.UTF8.GetBytes(message);
        var payload = NbdReplyCodec.ErrorPayloadSize(text.Length);
        var buffer = NbdBuffers.Pool.Rent(NbdReplyCodec.ChunkHeaderSize(_extended) + payload);
        var at = NbdReplyCodec.WriteChunkHeader(buffer, _extended, NbdConstants.ReplyFlagDone, NbdConstants.ReplyTypeError, request.Cookie, request.Offset, (ulong)payload);
        at += NbdReplyCodec.WriteError(buffer.AsSpan(at), error, text);
        Queue(slot, buffer, at);
    }

    /// <summary>
    /// READ. With structured replies and without DF, zero ranges (by block status through the backing
    /// chain) go as OFFSET_HOLE chunks and the rest as OFFSET_DATA; otherwise one data reply.
    /// </summary>
    private async Task ReadAsync(NbdRequestSlot slot, NbdRequest request, BlockNode node)
    {
        var offset = (long)request.Offset;
        var length = (int)request.Length;
        if (!_structured)
        {
            if (TryQueueFromFile(slot, request, node, NbdConstants.SimpleReplySize))
            {
                return;
            }

            var simple = NbdBuffers.Pool.Rent(NbdConstants.SimpleReplySize + length);
            try
            {
                await node.ReadAsync(offset, simple.AsMemory(NbdConstants.SimpleReplySize, length));
            }
            catch
            {
                NbdBuffers.Pool.Return(simple);
                throw;
            }

            NbdReplyCodec.WriteSimple(simple, 0, request.Cookie);
            Queue(slot, simple, NbdConstants.SimpleReplySize + length);
            return;
        }

        if ((request.Flags & NbdConstants.CmdFlagDf) == 0)
        {
            var extents = ArrayPool<ReadExtent>.Shared.Rent(MaxReadChunks + 1);
            try
            {
                var count = await MapReadAsync(node, offset, length, extents);
                if (count > 1 || extents[0].Zero)
                {
                    await ReadSparseAsync(slot, request, node, extents.AsMemory(0, count));
                    return;
                }
            }
            finally
            {
                ArrayPool<ReadExtent>.Shared.Return(extents);
            }
        }

        var header = NbdReplyCodec.ChunkHeaderSize(_extended);
        if (TryQueueFromFile(slot, request, node, header + NbdReplyCodec.OffsetDataPrefixSize))
        {
            return;
        }

        var buffer = NbdBuffers.Pool.Rent(header + NbdReplyCodec.OffsetDataPrefixSize + length);
        try
        {
            await node.ReadAsync(offset, buffer.AsMemory(header + NbdReplyCodec.OffsetDataPrefixSize, length));
        }
        catch
        {
            NbdBuffers.Pool.Return(buffer);
            throw;
        }

        var at = NbdReplyCodec.WriteChunkHeader(buffer, _extended, NbdConstants.ReplyFlagDone, NbdConstants.ReplyTypeOffsetData, request.Cookie, request.Offset, (ulong)(NbdReplyCodec.OffsetDataPrefixSize + length));
        NbdReplyCodec.WriteOffsetDataPrefix(buffer.AsSpan(at), request.Offset);
        Queue(slot, buffer, header + NbdReplyCodec.OffsetDataPrefixSize + length);
    }

    /// <summary>
    /// Queues a READ reply (a simple reply, or with structured replies one OFFSET_DATA chunk) of
    /// <paramref name="headerSize"/> bytes whose data the sender takes from the file that holds it;
    /// false when the read is small, the connection uses TLS, or the node cannot lease its bytes.
    /// </summary>
    private bool TryQueueFromFile(NbdRequestSlot slot, in NbdRequest request, BlockNode node, int headerSize)
    {
        if (request.Length < MinFileExtentRead || _tls is not null ||
            !node.TryLeaseFileExtent((long)request.Offset, (int)request.Length, out var extent))
        {
            return false;
        }

        var head = NbdBuffers.Pool.Rent(headerSize);
        if (_structured)
        {
            var at = NbdReplyCodec.WriteChunkHeader(head, _extended, NbdConstants.ReplyFlagDone, NbdConstants.ReplyTypeOffsetData, request.Cookie, request.Offset, (ulong)(NbdReplyCodec.OffsetDataPrefixSize + (int)request.Length));
            NbdReplyCodec.WriteOffsetDataPrefix(head.AsSpan(at), request.Offset);
        }
        else
        {
            NbdReplyCodec.WriteSimple(head, 0, request.Cookie);
        }

        slot.Extent = extent;
        Queue(slot, head, headerSize);
        return true;
    }

    /// <summary>Splits a read range into alternating data and zero extents; returns how many.</summary>
    private static async Task<int> MapReadAsync(BlockNode node, long offset, int length, ReadExtent[] extents)
    {
        var count = 0;
        var pos = offset;
        var end = offset + length;
        try
        {
            while (pos < end && count < MaxReadChunks)
            {
                var s = await node.GetBlockStatusAboveAsync(pos, end - pos);
                var n = (int)Math.Min(s.Length, end - pos);
                if (count > 0 && extents[count - 1].Zero == s.IsZero)
                {
                    extents[count - 1].Length += n;
                }
                else
                {
                    extents[count++] = new ReadExtent(pos, n, s.IsZero);
                }

                pos += n;
            }
        }
        catch (BlockException)
        {
            // Status unknown: the read itself decides, everything goes as data.
            count = 0;
            pos = offset;
        }

        if (pos < end)
        {
            if (count > 0 && !extents[count - 1].Zero)
            {
                extents[count - 1].Length += (int)(end - pos);
            }
            else
            {
                extents[count++] = new ReadExtent(pos, (int)(end - pos), false);
            }
        }

        return count;
    }

    private async Task ReadSparseAsync(NbdRequestSlot slot, NbdRequest request, BlockNode node, ReadOnlyMemory<ReadExtent> extents)
    {
        var header = NbdReplyCodec.ChunkHeaderSize(_extended);
        var size = 0;
        foreach (var e in extents.Span)
        {
            size += header + (e.Zero ? NbdReplyCodec.OffsetHolePayloadSize : NbdReplyCodec.OffsetDataPrefixSize + e.Length);
        }

        var buffer = NbdBuffers.Pool.Rent(size);
        try
        {
            var at = 0;
            for (var i = 0; i < extents.Length; i++)
            {
                var e = extents.Span[i];
                var flags = i == extents.Length - 1 ? NbdConstants.ReplyFlagDone : (ushort)0;
                if (e.Zero)
                {
                    at += NbdReplyCodec.WriteChunkHeader(buffer.AsSpan(at), _extended, flags, NbdConstants.ReplyTypeOffsetHole, request.Cookie, request.Offset, NbdReplyCodec.OffsetHolePayloadSize);
                    at += NbdReplyCodec.WriteOffsetHole(buffer.AsSpan(at), (ulong)e.Offset, (uint)e.Length);
                }
                else
                {
                    at += NbdReplyCodec.WriteChunkHeader(buffer.AsSpan(at), _extended, flags, NbdConstants.ReplyTypeOffsetData, request.Cookie, request.Offset, (ulong)(NbdReplyCodec.OffsetDataPrefixSize + e.Length));
                    at += NbdReplyCodec.WriteOffsetDataPrefix(buffer.AsSpan(at), (ulong)e.Offset);
                    await node.ReadAsync(e.Offset, buffer.AsMemory(at, e.Length));
                    at += e.Length;
                }
            }
        }
        catch
        {
            NbdBuffers.Pool.Return(buffer);
            throw;
        }

        Queue(slot, buffer, size);
    }

    /// <summary>BLOCK_STATUS: one chunk per selected context (BLOCK_STATUS_EXT with extended headers), the last one DONE.</summary>
    private async Task BlockStatusAsync(NbdRequestSlot slot, NbdRequest request, BlockNode node)
    {
        var meta = _meta;
        var max = (request.Flags & NbdConstants.CmdFlagReqOne) != 0 ? 1 : MaxStatusExtents;
        var extents = ArrayPool<(long Length, uint Flags)>.Shared.Rent(max * meta.Count);
        var counts = new int[meta.Count];
        try
        {
            var header = NbdReplyCodec.ChunkHeaderSize(_extended);
            var size = 0;
            for (var c = 0; c < meta.Count; c++)
            {
                counts[c] = await CollectStatusAsync(meta[c].Context, node, (long)request.Offset, (long)request.Length, extents.AsMemory(c * max, max));
                size += header + NbdReplyCodec.BlockStatusPayloadSize(_extended, counts[c]);
            }

            var buffer = NbdBuffers.Pool.Rent(size);
            var at = 0;
            for (var c = 0; c < meta.Count; c++)
            {
                var flags = c == meta.Count - 1 ? NbdConstants.ReplyFlagDone : (ushort)0;
                var type = _extended ? NbdConstants.ReplyTypeBlockStatusExt : NbdConstants.ReplyTypeBlockStatus;
                at += NbdReplyCodec.WriteChunkHeader(buffer.AsSpan(at), _extended, flags, type, request.Cookie, request.Offset, (ulong)NbdReplyCodec.BlockStatusPayloadSize(_extended, counts[c]));
                at += NbdReplyCodec.WriteBlockStatusPrefix(buffer.AsSpan(at), _extended, (uint)meta[c].Id, counts[c]);
                for (var i = 0; i < counts[c]; i++)
                {
                    var (length, status) = extents[(c * max) + i];
                    at += NbdReplyCodec.WriteBlockStatusDescriptor(buffer.AsSpan(at), _extended, (ulong)length, status);
                }
            }

            Queue(slot, buffer, size);
        }
        finally
        {
            ArrayPool<(long, uint)>.Shared.Return(extents);
        }
    }

    /// <summary>Fills <paramref name="extents"/> from the start of the range, merging neighbours with equal status.</summary>
    private static async Task<int> CollectStatusAsync(NbdMetaContext context, BlockNode node, long offset, long length, Memory<(long Length, uint Flags)> extents)
    {
        var count = 0;
        var end = offset + length;
        while (offset < end)
        {
            var (n, flags) = await context.GetExtentAsync(node, offset, end - offset);
            n = Math.Min(n, end - offset);
            var span = extents.Span;
            if (count > 0 && span[count - 1].Flags == flags)
            {
                span[count - 1].Length += n;
            }
            else if (count < span.Length)
            {
                span[count++] = (n, flags);
            }
            else
            {
                break;
            }

            offset += n;
        }

        return count;
    }

    /// <summary>
    /// Hands a finished reply to the sender. The thread that finds no send in progress becomes the
    /// sender and sends what is queued (its own reply and whatever arrives meanwhile), so a reply
    /// usually leaves on the thread that built it, without waking another. A reply finished inside a
    /// <see cref="CompletionBatch"/> waits for the batch's end, to leave in one send with the others.
    /// </summary>
    private void Queue(NbdRequestSlot slot, byte[] reply, int length)
    {
        slot.Reply = reply;
        slot.ReplyLength = length;
        _replies.Enqueue(slot);
        if (!CompletionBatch.TryDefer(this))
        {
            StartSending();
        }
    }

    /// <summary>Sends what is queued unless another thread already does; a reply queued meanwhile is never left behind (see SendQueuedAsync).</summary>
    private void StartSending()
    {
        if (Interlocked.CompareExchange(ref _sending, 1, 0) == 0)
        {
            _ = SendQueuedAsync();
        }
    }

    void CompletionBatch.IFlush.Flush() => StartSending();

    /// <summary>Returns a slot whose reply was sent or dropped, and frees its place for the next request.</summary>
    private void Release(NbdRequestSlot slot)
    {
        if (slot.Reply is not null)
        {
            NbdBuffers.Pool.Return(slot.Reply);
            slot.Reply = null;
        }

        if (slot.Extent.Handle is not null)
        {
            slot.Extent.Dispose();
            slot.Extent = default;
        }

        if (slot.Budgeted > 0)
        {
            _server.Budget.Release(_budgetAccount, slot.Budgeted);
            slot.Budgeted = 0;
        }

        _free.Enqueue(slot);
        _slots.Give();
    }

    /// <summary>
    /// Runs while this caller owns the send side (<see cref="_sending"/> is 1): gathers queued replies
    /// into one send until the queue is empty, then gives up ownership. After a send fails the connection
    /// is cut and further replies are dropped quietly, so workers never see the failure.
    /// </summary>
    private async Task SendQueuedAsync()
    {
        var batch = _sendBatch;
        var segments = _sendSegments;
        while (true)
        {
            var bytes = 0L;
            while (bytes < MaxBatchBytes && _replies.TryDequeue(out var slot))
            {
                batch.Add(slot);
                segments.Add(new ArraySegment<byte>(slot.Reply!, 0, slot.ReplyLength));
                bytes += slot.ReplyLength;
                if (slot.Extent.Handle is not null)
                {
                    // Its data follows from the file once the batch's bytes are out: it ends the batch.
                    break;
                }
            }

            if (batch.Count == 0)
            {
                Volatile.Write(ref _sending, 0);
                if (_replies.IsEmpty || Interlocked.CompareExchange(ref _sending, 1, 0) != 0)
                {
                    return;
                }

                continue;
            }

            if (Volatile.Read(ref _closed) == 0)
            {
                try
                {
                    var sent = _tls is not null ? await SendTlsAsync(_tls, segments, bytes).ConfigureAwait(false)
                        : batch[^1].Extent.Handle is not null ? await SendBeforeExtentAsync(segments).ConfigureAwait(false)
                        : batch.Count == 1 ? await SendAllAsync(segments[0]).ConfigureAwait(false)
                        : await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
                    if (sent != bytes)
                    {
                        throw new IOException($"short send: {sent} of {bytes} bytes");
                    }

                    if (batch[^1].Extent.Handle is not null)
                    {
                        await SendExtentAsync(batch[^1].Extent).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
                {
                    NbdLog.Disconnected(_log, Id, e.Message);
                    Abort();
                }
            }

            foreach (var slot in batch)
            {
                Release(slot);
            }

            batch.Clear();
            segments.Clear();
        }
    }

    /// <summary>
    /// Sends a reply's data from its file with sendfile. While the socket is full, a chunk goes
    /// through memory instead: a send from a buffer waits for room like any other, after which
    /// sendfile takes over again. A file that ended early (cut short since the lease) is followed
    /// by zeroes, as a read past its end gives, so the reply keeps its length.
    /// </summary>
    private async ValueTask SendExtentAsync(FileExtent extent)
    {
        var offset = extent.Offset;
        var left = extent.Length;
        byte[]? copy = null;
        try
        {
            while (left > 0)
            {
                var n = SendFile.Send(_socket.SafeHandle, extent.Handle, ref offset, left);
                if (n > 0)
                {
                    left -= (int)n;
                    continue;
                }

                if (n == -SendFile.EINTR)
                {
                    continue;
                }

                if (n != 0 && n != -SendFile.EAGAIN)
                {
                    throw new IOException($"sendfile: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage((int)-n)}");
                }

                copy ??= NbdBuffers.Pool.Rent(ExtentCopyChunk);
                var chunk = Math.Min(left, ExtentCopyChunk);
                var read = n == 0 ? 0 : RandomAccess.Read(extent.Handle, copy.AsSpan(0, chunk), offset);
                copy.AsSpan(read, chunk - read).Clear();
                await SendAllAsync(new ArraySegment<byte>(copy, 0, chunk)).ConfigureAwait(false);
                offset += chunk;
                left -= chunk;
            }
        }
        finally
        {
            if (copy is not null)
            {
                NbdBuffers.Pool.Return(copy);
            }
        }
    }

    /// <summary>
    /// Sends a batch whose last reply's data follows from its file: the replies before it as usual,
    /// then its header flagged MSG_MORE (see <see cref="SendFile.SendMore"/>), so that over TCP the
    /// header leaves in one segment with the start of the data instead of alone. What the socket
    /// does not take at once goes the usual way.
    /// </summary>
    private async ValueTask<long> SendBeforeExtentAsync(List<ArraySegment<byte>> segments)
    {
        var sent = 0L;
        if (segments.Count > 1)
        {
            sent = await _socket.SendAsync(segments.GetRange(0, segments.Count - 1), SocketFlags.None).ConfigureAwait(false);
        }

        var header = segments[^1];
        var n = SendFile.SendMore(_socket.SafeHandle, header);
        if (n < 0 && n != -SendFile.EAGAIN && n != -SendFile.EINTR)
        {
            throw new IOException($"send: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage((int)-n)}");
        }

        var took = (int)Math.Max(n, 0);
        if (took < header.Count)
        {
            await SendAllAsync(header.Slice(took)).ConfigureAwait(false);
        }

        return sent + header.Count;
    }

    private async ValueTask<int> SendAllAsync(ArraySegment<byte> data)
    {
        var sent = 0;
        while (sent < data.Count)
        {
            sent += await _socket.SendAsync(data.AsMemory(sent), SocketFlags.None).ConfigureAwait(false);
        }

        return sent;
    }

    /// <summary>
    /// Sends a batch through TLS: small replies are gathered into one write, so they share records
    /// instead of each costing a record and a system call; large ones are written as they are.
    /// </summary>
    private static async ValueTask<int> SendTlsAsync(Stream tls, List<ArraySegment<byte>> segments, long bytes)
    {
        if (segments.Count == 1 || bytes > MaxGatheredTlsBytes)
        {
            foreach (var segment in segments)
            {
                await tls.WriteAsync(segment).ConfigureAwait(false);
            }

            return (int)bytes;
        }

        var staging = NbdBuffers.Pool.Rent((int)bytes);
        try
        {
            var at = 0;
            foreach (var segment in segments)
            {
                segment.AsSpan().CopyTo(staging.AsSpan(at));
                at += segment.Count;
            }

            await tls.WriteAsync(staging.AsMemory(0, at)).ConfigureAwait(false);
            return (int)bytes;
        }
        finally
        {
            NbdBuffers.Pool.Return(staging);
        }
    }
}
