using ExportServer.Block.Core;
using ExportServer.Server.Commands;
using ExportServer.Server.Daemon;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Qmp;

/// <summary>The QMP side of the daemon: the command table, the event hub and the monitors.</summary>
internal sealed class QmpService : IAsyncDisposable
{
    private readonly List<QmpMonitor> _monitors = new();
    private readonly ILogger _log;

    public QmpService(StorageDaemon daemon, ILogger log)
    {
        _log = log;
        Dispatcher = new QmpDispatcher(log);
        daemon.EventSink = Events.Emit;
        CommandTable.Register(Dispatcher, daemon);
    }

    public QmpDispatcher Dispatcher { get; }

    public QmpEventHub Events { get; } = new();

    /// <summary>Starts serving QMP on a chardev that --monitor named.</summary>
    public void StartMonitor(Chardev chardev)
    {
        var monitor = new QmpMonitor(chardev, Dispatcher, Events, _log);
        try
        {
            monitor.Start();
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or UnauthorizedAccessException)
        {
            throw BlockException.Io($"Failed to bind socket to {chardev.Path}: {(e is System.Net.Sockets.SocketException ? e.Message : BlockException.Reason(e))}", e);
        }

        _monitors.Add(monitor);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _monitors)
        {
            await m.DisposeAsync().ConfigureAwait(false);
        }

        _monitors.Clear();
    }
}
