using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>
/// One client connection to an NBD export: the fixed newstyle handshake (NbdClient.Handshake.cs), then
/// requests from many callers in flight at once (NbdClient.Requests.cs), each sent whole in one send and
/// answered by one receive loop that matches replies to requests by cookie (NbdClient.Receive.cs).
/// When the connection ends, every request still waiting fails: with EIO when the server went away
/// (<see cref="IsBroken"/>), with ESHUTDOWN when this side closed it.
/// </summary>
internal sealed partial class NbdClient : IAsyncDisposable
{
    /// <summary>Requests in flight at most; further callers wait for a free slot.</summary>
    public const int MaxInFlight = 64;

    private readonly Socket _socket;
    private PipeReader _reader;
    private readonly object _gate = new();
    private readonly NbdClientRequest[] _requests = new NbdClientRequest[MaxInFlight];
    private readonly ConcurrentQueue<NbdClientRequest> _free = new();
    private readonly SemaphoreSlim _slots = new(MaxInFlight, MaxInFlight);
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private Task _receiveLoop = Task.CompletedTask;
    private BlockException? _failure;
    private bool _closing;
    private int _disposed;

    private NbdClient(Socket socket, string exportName)
    {
        _socket = socket;
        ExportName = exportName;
        _reader = CreateReader(new NetworkStream(socket, ownsSocket: false));
        for (var i = 0; i < MaxInFlight; i++)
        {
            _requests[i] = new NbdClientRequest((ulong)i);
            _free.Enqueue(_requests[i]);
        }
    }

    public string ExportName { get; }

    private static PipeReader CreateReader(Stream stream) =>
        PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 128 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));

    public NbdExportInfo Info { get; private set; } = null!;

    /// <summary>Requests holding a slot now (sent or about to be).</summary>
    public int InFlight => MaxInFlight - _slots.CurrentCount;

    /// <summary>The connection ended without this side closing it (server gone, network error, protocol violation).</summary>
    public bool IsBroken
    {
        get
        {
            lock (_gate)
            {
                return _failure is not null && !_closing;
            }
        }
    }

    /// <summary>Completes when the receive loop has ended, i.e. the connection is over.</summary>
    public Task Completion => _receiveLoop;

    /// <summary>Connects to <paramref name="endPoint"/> (TCP or unix socket) and negotiates <paramref name="exportName"/>.</summary>
    public static async Task<NbdClient> ConnectAsync(EndPoint endPoint, string exportName, CancellationToken ct, bool keepAlive = false, NbdClientTls? tls = null)
    {
        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        NbdClient? client = null;
        try
        {
            if (socket.AddressFamily != AddressFamily.Unix)
            {
                socket.NoDelay = true;
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, keepAlive);
            }

            await socket.ConnectAsync(endPoint, ct).ConfigureAwait(false);
            if (socket.AddressFamily != AddressFamily.Unix)
            {
                SameHostTcp.AvoidPacing(socket);
            }

            client = new NbdClient(socket, exportName);
            client.Info = await client.HandshakeAsync(tls, ct).ConfigureAwait(false);
            client._receiveLoop = Task.Run(client.ReceiveLoopAsync, CancellationToken.None);
            return client;
        }
        catch (Exception e)
        {
            if (client is not null)
            {
                await client._reader.CompleteAsync().ConfigureAwait(false);
                client._tls?.Dispose();
            }

            socket.Dispose();
            throw e switch
            {
                BlockException b => b,
                OperationCanceledException => new BlockException(Errno.ETIMEDOUT, $"Failed to connect to '{endPoint}': timed out", e),
                EndOfStreamException => BlockException.Io($"Failed to connect to '{endPoint}': the server closed the connection during the handshake", e),
                _ => BlockException.Io($"Failed to connect to '{endPoint}': {e.Message}", e),
            };
        }
    }

    /// <summary>Sends NBD_CMD_DISC when the connection is still up, then closes it; waiting requests fail with ESHUTDOWN.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        bool alive;
        lock (_gate)
        {
            alive = _failure is null;
            _closing = true;
        }

        if (alive)
        {
            try
            {
                await SendDisconnectAsync().ConfigureAwait(false);
                _socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
                // The server is gone already: closing goes on.
            }
        }

        // A server answers DISC by closing; one that does not is cut off shortly after.
        await Task.WhenAny(_receiveLoop, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        _socket.Dispose();
        await _receiveLoop.ConfigureAwait(false);
        _tls?.Dispose();
    }

    /// <summary>Ends the connection at once; the receive loop then fails every waiting request.</summary>
    private void Abort()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed: the receive loop is ending or has ended.
        }
    }

    /// <summary>Sends all of <paramref name="data"/>; the caller holds the send lock or is in the handshake.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendRawAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
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
}
