using System.Net.Sockets;
using ExportServer.Server.Daemon;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Qmp;

/// <summary>
/// A QMP monitor on a unix server socket (--chardev socket,server=on + --monitor). Like QEMU it
/// serves one client at a time; the next connection is accepted when the current client leaves.
/// </summary>
internal sealed class QmpMonitor : IAsyncDisposable
{
    private readonly Chardev _chardev;
    private readonly QmpDispatcher _dispatcher;
    private readonly QmpEventHub _events;
    private readonly Task _started;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Socket? _listener;
    private Task _loop = Task.CompletedTask;

    /// <param name="started">Completes when start-up is over; input is read only from then on.</param>
    public QmpMonitor(Chardev chardev, QmpDispatcher dispatcher, QmpEventHub events, Task started, ILogger log)
    {
        _chardev = chardev;
        _dispatcher = dispatcher;
        _events = events;
        _started = started;
        _log = log;
    }

    /// <summary>Binds the socket (replacing a stale file, as QEMU does) and starts accepting.</summary>
    public void Start()
    {
        if (File.Exists(_chardev.Path))
        {
            File.Delete(_chardev.Path);
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(_chardev.Path));
            listener.Listen(1);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        _listener = listener;
        _loop = AcceptLoopAsync(listener);
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                return;
            }

            try
            {
                await using var stream = new NetworkStream(client, ownsSocket: true);
                var session = new QmpSession(stream, _dispatcher, _events, _started, _log);
                await session.RunAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // One client's failure never stops the monitor: the next client is greeted.
                _log.LogError(e, "monitor client failed");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        await _loop.ConfigureAwait(false);
        try
        {
            File.Delete(_chardev.Path);
        }
        catch (IOException)
        {
            // The socket file may already be gone; nothing else depends on it.
        }

        _stop.Dispose();
    }
}
