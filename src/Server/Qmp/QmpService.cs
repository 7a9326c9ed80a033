using ExportServer.Block.Core;
using ExportServer.Server.Commands;
using ExportServer.Server.Daemon;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Qmp;

/// <summary>The QMP side of the daemon: the command table, the event hub and the monitors.</summary>
internal sealed class QmpService : IAsyncDisposable
{
    private readonly List<QmpMonitor> _monitors = new();
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
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

    /// <summary>
    /// Starts listening on a chardev that --monitor named. Clients are accepted and greeted at once,
    /// but their input is read only after <see cref="StartupComplete"/>.
    /// </summary>
    public void StartMonitor(Chardev chardev)
    {
        var monitor = new QmpMonitor(chardev, Dispatcher, Events, _started.Task, _log);
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

    /// <summary>
    /// Every command-line option has been processed: monitors begin answering. qemu-storage-daemon
    /// runs its main loop, which dispatches QMP commands, only after its options, so a client that
    /// connects early still sees everything the command line set up.
    /// </summary>
    public void StartupComplete() => _started.TrySetResult();

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _monitors)
        {
            await m.DisposeAsync().ConfigureAwait(false);
        }

        _monitors.Clear();
    }
}
