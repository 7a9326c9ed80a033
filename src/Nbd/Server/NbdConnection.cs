using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using ExportServer.Nbd.Protocol;
using ExportServer.Block.Exports;
using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Server;

/// <summary>
/// One client connection: the handshake (NbdConnection.Handshake.cs), then the transmission phase with one
/// receive loop, requests processed concurrently in a bounded set of slots, and one sender at a time that sends
/// finished replies whole and in batches (NbdConnection.Transmission.cs, NbdConnection.Replies.cs).
/// </summary>
internal sealed partial class NbdConnection
{
    private readonly NbdServer _server;
    private readonly Socket _socket;
    private readonly ILogger _log;
    private PipeReader _reader;

    /// <summary>What the request pipe reads on a plain connection; null once TLS is on.</summary>
    private ReceiveStream? _receiveStream;

    /// <summary>The TLS session after STARTTLS; null on a plain connection, whose sends and payload reads use the socket directly.</summary>
    private Stream? _tls;
    private readonly RequestSlots _slots = new(MaxInFlight);

    /// <summary>The slots this connection uses: <see cref="MaxInFlight"/>, or fewer where the storage asks (see TransmissionAsync).</summary>
    private int _maxInFlight = MaxInFlight;
    private readonly NbdByteBudget.Account _budgetAccount = new();
    private readonly ConcurrentQueue<NbdRequestSlot> _free = new();
    private readonly ConcurrentQueue<NbdRequestSlot> _replies = new();
    private readonly List<NbdRequestSlot> _sendBatch = new(MaxInFlight);
    private readonly List<ArraySegment<byte>> _sendSegments = new(MaxInFlight);

    /// <summary>1 while some thread sends queued replies (see SendQueuedAsync).</summary>
    private int _sending;

    private NbdExport? _export;
    private int _closed;

    /// <summary>How long the receive loop polls before it waits (see WaitForRequestAsync).</summary>
    private AdaptivePoll _poll;

    public NbdConnection(NbdServer server, Socket socket, long id, ILogger log)
    {
        _server = server;
        _socket = socket;
        _log = log;
        Id = id;
        _receiveStream = new ReceiveStream(socket);
        _reader = CreateReader(_receiveStream);
        for (var i = 0; i < MaxInFlight; i++)
        {
            _free.Enqueue(new NbdRequestSlot(this));
        }
    }

    public long Id { get; }

    /// <summary>Runs the connection to its end; never throws: every failure is classified and logged here.</summary>
    public async Task RunAsync()
    {
        try
        {
            if (await HandshakeAsync().ConfigureAwait(false))
            {
                await TransmissionAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            LogFailure(e);
        }
        finally
        {
            _export?.Detach(this);
            await _reader.CompleteAsync().ConfigureAwait(false);
            if (_tls is not null)
            {
                await _tls.DisposeAsync().ConfigureAwait(false);
            }

            _socket.Dispose();
            NbdLog.Closed(_log, Id);
        }
    }

    private static PipeReader CreateReader(Stream stream) =>
        PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 128 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));

    /// <summary>Stops reading new requests; requests in flight finish and are answered, then the connection closes.</summary>
    public void CloseGracefully() => Shutdown(SocketShutdown.Receive);

    /// <summary>Cuts the connection at once; replies still being prepared are dropped.</summary>
    public void Abort()
    {
        Interlocked.Exchange(ref _closed, 1);
        Shutdown(SocketShutdown.Both);
    }

    private void Shutdown(SocketShutdown how)
    {
        try
        {
            _socket.Shutdown(how);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed by the peer or by us: nothing left to stop.
        }
    }

    private void LogFailure(Exception e)
    {
        switch (e)
        {
            case NbdProtocolException:
                NbdLog.ProtocolViolation(_log, Id, e.Message);
                break;
            case OperationCanceledException:
                NbdLog.ProtocolViolation(_log, Id, "handshake timed out");
                break;
            case System.Security.Authentication.AuthenticationException:
                NbdLog.ProtocolViolation(_log, Id, $"TLS handshake failed: {e.Message}");
                break;
            case EndOfStreamException:
                NbdLog.Disconnected(_log, Id, "end of stream");
                break;
            case SocketException or IOException or ObjectDisposedException:
                NbdLog.Disconnected(_log, Id, e.Message);
                break;
            default:
                NbdLog.ConnectionFailed(_log, Id, e);
                break;
        }
    }

    /// <summary>Sends all of <paramref name="data"/> (handshake only; SendQueuedAsync owns the socket afterwards).</summary>
    private async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (_tls is not null)
        {
            await _tls.WriteAsync(data, ct).ConfigureAwait(false);
            return;
        }

        while (!data.IsEmpty)
        {
            var n = await _socket.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false);
            data = data[n..];
        }
    }

    /// <summary>Copies exactly <paramref name="destination"/>.Length received bytes; EOF first is an error.</summary>
    private ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken ct) => _reader.ReadExactAsync(destination, ct);

    /// <summary>Reads and drops <paramref name="count"/> bytes (the payload of a refused WRITE) to keep framing.</summary>
    private async ValueTask SkipAsync(ulong count)
    {
        while (count > 0)
        {
            var result = await _reader.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.IsEmpty && (result.IsCompleted || result.IsCanceled))
            {
                throw new EndOfStreamException();
            }

            var n = (long)Math.Min((ulong)buffer.Length, count);
            _reader.AdvanceTo(buffer.GetPosition(n));
            count -= (ulong)n;
        }
    }
}
