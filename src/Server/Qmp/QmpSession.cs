using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp.Types;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Qmp;

/// <summary>
/// One client of a monitor: greeting, then requests answered in order. Replies and events go
/// through one queue and one writer loop, so an event emitted while a command runs is sent before
/// that command's reply, as QEMU does.
/// </summary>
internal sealed class QmpSession
{
    private readonly Stream _stream;
    private readonly QmpDispatcher _dispatcher;
    private readonly QmpEventHub _events;
    private readonly Task _started;
    private readonly ILogger _log;
    private readonly Channel<string> _out = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private volatile bool _negotiated;

    /// <param name="started">Completes when the daemon's start-up is over: commands wait for it.</param>
    public QmpSession(Stream stream, QmpDispatcher dispatcher, QmpEventHub events, Task started, ILogger log)
    {
        _stream = stream;
        _dispatcher = dispatcher;
        _events = events;
        _started = started;
        _log = log;
    }

    /// <summary>Whether qmp_capabilities has run: commands are accepted and events delivered.</summary>
    public bool Negotiated => _negotiated;

    public void CompleteNegotiation() => _negotiated = true;

    /// <summary>Queues one line (a reply or an event) for the client.</summary>
    public void Send(string line) => _out.Writer.TryWrite(line);

    /// <summary>Serves the client until it disconnects or <paramref name="cancel"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancel)
    {
        _events.Attach(this);
        var writer = WriteLoopAsync();
        try
        {
            Send(QmpJson.Write(JsonSerializer.SerializeToNode(new QmpGreeting(new QmpGreetingBody(VersionInfo.Current, ["oob"])), QmpJsonContext.Default.QmpGreeting)!));

            // Greeted at once, answered once start-up is over, as qemu-storage-daemon does.
            await _started.WaitAsync(cancel).ConfigureAwait(false);
            await ReadLoopAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            _log.LogDebug("monitor client gone: {Reason}", e.Message);
        }
        finally
        {
            _events.Detach(this);
            _out.Writer.TryComplete();
            await writer.ConfigureAwait(false);
        }
    }

    private async Task ReadLoopAsync(CancellationToken cancel)
    {
        var streamer = new QmpJsonStreamer();
        var bytes = new byte[8192];
        var inputs = new List<QmpInput>();
        while (true)
        {
            var n = await _stream.ReadAsync(bytes, cancel).ConfigureAwait(false);
            if (n == 0)
            {
                return;
            }

            inputs.Clear();
            streamer.Feed(bytes.AsSpan(0, n), inputs);
            foreach (var input in inputs)
            {
                await AnswerAsync(input).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Answers one input; whatever goes wrong with it ends here, not with the connection.</summary>
    private async Task AnswerAsync(QmpInput input)
    {
        try
        {
            var reply = await _dispatcher.DispatchAsync(input, this).ConfigureAwait(false);
            Send(QmpJson.Write(reply.ToJson()));
            reply.AfterReply?.Invoke();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _log.LogError(e, "monitor input failed");
            Send(QmpJson.Write(QmpReply.Fail(null, QmpErrorClass.GenericError, BlockException.Reason(e)).ToJson()));
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var line in _out.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                var bytes = Encoding.UTF8.GetBytes(line + "\r\n");
                await _stream.WriteAsync(bytes).ConfigureAwait(false);
                await _stream.FlushAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            _log.LogDebug("monitor client write failed: {Reason}", e.Message);
        }
    }
}
