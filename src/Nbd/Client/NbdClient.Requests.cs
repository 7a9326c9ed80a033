using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>
/// The transmission-phase commands. Each takes a pooled request slot, sends header and payload in one
/// send under the send lock, and waits for the receive loop to complete the slot. Callers respect the
/// export's limits (a request no longer than the maximum block size; the node guarantees it).
/// </summary>
internal sealed partial class NbdClient
{
    /// <summary>Payloads above this size are not copied but sent from the caller's array.</summary>
    private const int GatherThreshold = 64 * 1024;

    private readonly byte[] _gatherHeader = new byte[NbdConstants.ExtendedRequestHeaderSize];
    private readonly ArraySegment<byte>[] _gather = new ArraySegment<byte>[2];

    public ValueTask ReadAsync(long offset, Memory<byte> buffer) =>
        RunAsync(NbdConstants.CmdRead, 0, offset, buffer.Length, buffer, default);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua) =>
        RunAsync(NbdConstants.CmdWrite, fua ? NbdConstants.CmdFlagFua : (ushort)0, offset, data.Length, default, data);

    public ValueTask FlushAsync() => RunAsync(NbdConstants.CmdFlush, 0, 0, 0, default, default);

    public ValueTask TrimAsync(long offset, long length) => RunAsync(NbdConstants.CmdTrim, 0, offset, length, default, default);

    public ValueTask CacheAsync(long offset, long length) => RunAsync(NbdConstants.CmdCache, 0, offset, length, default, default);

    /// <summary>
    /// Zeroes a range. Without <paramref name="mayUnmap"/> the server must keep it allocated (NO_HOLE);
    /// <paramref name="fast"/> asks it to fail with ENOTSUP rather than write slowly (FAST_ZERO).
    /// </summary>
    public ValueTask WriteZeroesAsync(long offset, long length, bool mayUnmap, bool fast, bool fua)
    {
        var flags = (ushort)((mayUnmap ? 0 : NbdConstants.CmdFlagNoHole)
            | (fast ? NbdConstants.CmdFlagFastZero : 0)
            | (fua ? NbdConstants.CmdFlagFua : 0));
        return RunAsync(NbdConstants.CmdWriteZeroes, flags, offset, length, default, default);
    }

    /// <summary>The first base:allocation extent from <paramref name="offset"/> (REQ_ONE); needs the context to be negotiated.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<NbdExtent> BlockStatusAsync(long offset, long length)
    {
        if (Info.BaseAllocationId is not { } context)
        {
            throw BlockException.NotSupported("The NBD server offers no base:allocation context");
        }

        var r = await StartAsync(NbdConstants.CmdBlockStatus, NbdConstants.CmdFlagReqOne, offset, length, default, default, context)
            .ConfigureAwait(false);
        try
        {
            await WaitAsync(r).ConfigureAwait(false);
            if (!r.HasExtent)
            {
                throw BlockException.Io("The NBD server sent no extent for base:allocation");
            }

            return r.Extent;
        }
        finally
        {
            Release(r);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunAsync(ushort command, ushort flags, long offset, long length, Memory<byte> readBuffer, ReadOnlyMemory<byte> payload)
    {
        var r = await StartAsync(command, flags, offset, length, readBuffer, payload, 0).ConfigureAwait(false);
        try
        {
            await WaitAsync(r).ConfigureAwait(false);
        }
        finally
        {
            Release(r);
        }
    }

    /// <summary>Takes a slot, registers it for the receive loop and sends the request; the slot then belongs to the caller until released.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<NbdClientRequest> StartAsync(
        ushort command, ushort flags, long offset, long length, Memory<byte> readBuffer, ReadOnlyMemory<byte> payload, uint context)
    {
        await _slots.WaitAsync().ConfigureAwait(false);
        if (!_free.TryDequeue(out var r))
        {
            _slots.Release();
            throw new InvalidOperationException("request slot accounting broken");
        }

        r.Prepare(command, flags, (ulong)offset, (ulong)length, readBuffer, context);
        lock (_gate)
        {
            if (_failure is { } failure)
            {
                Release(r);
                throw Failed(failure);
            }

            r.InUse = true;
        }

        try
        {
            await SendRequestAsync(r, payload).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // The receive loop sees the connection end and fails this request with the others.
            Abort();
        }

        return r;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WaitAsync(NbdClientRequest r)
    {
        await r.WaitAsync().ConfigureAwait(false);
        if (r.Error != 0)
        {
            var errno = NbdWireError.ToErrno(r.Error);
            throw new BlockException(
                errno,
                $"NBD server: {NbdConstants.CommandName(r.Command)} at {r.Offset}+{r.Length} failed: {r.ErrorMessage ?? NbdConstants.ErrorName(r.Error)}");
        }
    }

    private void Release(NbdClientRequest r)
    {
        r.ReadBuffer = default;
        _free.Enqueue(r);
        _slots.Release();
    }

    /// <summary>
    /// Header and payload go out in one send under the send lock: a small payload (or one not backed by an
    /// array) is copied behind the header into a pooled buffer; a large array-backed one is sent with the
    /// header as a gather list, without copying.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendRequestAsync(NbdClientRequest r, ReadOnlyMemory<byte> payload)
    {
        var extended = Info.ExtendedHeaders;
        var request = new NbdRequest(r.Flags, r.Command, r.Cookie, r.Offset, r.Length);
        if (payload.Length > GatherThreshold && MemoryMarshal.TryGetArray(payload, out var segment))
        {
            await _sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                var headerSize = NbdRequestCodec.Write(_gatherHeader, extended, request);
                if (_tls is not null)
                {
                    await _tls.WriteAsync(_gatherHeader.AsMemory(0, headerSize)).ConfigureAwait(false);
                    await _tls.WriteAsync(payload).ConfigureAwait(false);
                    return;
                }

                _gather[0] = new ArraySegment<byte>(_gatherHeader, 0, headerSize);
                _gather[1] = segment;
                var sent = await _socket.SendAsync(_gather, SocketFlags.None).ConfigureAwait(false);
                if (sent < headerSize + payload.Length)
                {
                    var rest = sent < headerSize ? _gatherHeader.AsMemory(sent, headerSize - sent) : ReadOnlyMemory<byte>.Empty;
                    await SendRawAsync(rest, CancellationToken.None).ConfigureAwait(false);
                    await SendRawAsync(payload[Math.Max(sent - headerSize, 0)..], CancellationToken.None).ConfigureAwait(false);
                }
            }
            finally
            {
                _sendLock.Release();
            }

            return;
        }

        var size = NbdRequestCodec.HeaderSize(extended);
        var total = size + payload.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            NbdRequestCodec.Write(buffer, extended, request);
            payload.Span.CopyTo(buffer.AsSpan(size));
            await _sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                await SendRawAsync(buffer.AsMemory(0, total), CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async ValueTask SendDisconnectAsync()
    {
        var header = new byte[NbdConstants.ExtendedRequestHeaderSize];
        var n = NbdRequestCodec.Write(header, Info.ExtendedHeaders, new NbdRequest(0, NbdConstants.CmdDisc, ulong.MaxValue, 0, 0));
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await SendRawAsync(header.AsMemory(0, n), CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>A fresh exception per request, so that concurrent waiters do not share one stack trace.</summary>
    private static BlockException Failed(BlockException failure) => new(failure.Errno, failure.Message, failure.InnerException);
}
