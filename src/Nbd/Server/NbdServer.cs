using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ExportServer.Nbd.Server;

/// <summary>
/// The NBD server (fixed newstyle, structured replies, extended headers, metadata contexts): listens on
/// TCP and unix sockets and serves the exports added to it. Bad input from one client only ever
/// closes that client's connection.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>How long disposal waits for connections to finish their requests before cutting them.</summary>
    private static readonly TimeSpan s_closeGrace = TimeSpan.FromSeconds(5);

    /// <summary>The send buffer asked for on every accepted connection (see <see cref="SetSendBuffer"/>).</summary>
    private const int SendBufferBytes = 2 * 1024 * 1024;

    private readonly NbdServerOptions _options;
    private readonly SemaphoreSlim? _slots;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();

    /// <summary>The connections registered now, kept beside the dictionary: its Count takes every lock, and a receive loop asks before each wait.</summary>
    private int _connectionCount;
    private readonly List<(Socket Socket, EndPoint EndPoint)> _listeners = new();
    private readonly List<Task> _acceptLoops = new();
    private readonly CancellationTokenSource _stop = new();
    private long _nextId;
    private int _disposed;

    public NbdServer(NbdServerOptions options, ILogger? logger = null)
    {
        _options = options;
        _slots = options.MaxConnections > 0 ? new SemaphoreSlim(options.MaxConnections) : null;
        _log = logger ?? NullLogger.Instance;
    }

    public NbdServerOptions Options => _options;

    /// <summary>The data bytes all connections' requests may hold at once.</summary>
    internal NbdByteBudget Budget { get; } = new(NbdByteBudget.DefaultLimit);

    public IReadOnlyCollection<NbdExportOptions> Exports => _exports.Values.Select(e => e.Options).ToList();

    public int ConnectionCount => Volatile.Read(ref _connectionCount);

    internal IEnumerable<NbdExport> ExportList => _exports.Values;

    internal NbdExport? FindExport(string name) => _exports.GetValueOrDefault(name);

    /// <summary>Connections bound to the export named <paramref name="name"/> now.</summary>
    public int ClientCount(string name) => _exports.TryGetValue(name, out var export) ? export.ConnectionCount : 0;

    /// <summary>Binds and listens on every endpoint now; on failure nothing stays bound.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        try
        {
            foreach (var endPoint in _options.EndPoints)
            {
                _listeners.Add((Bind(endPoint), endPoint));
                NbdLog.Listening(_log, endPoint);
            }
        }
        catch (SocketException e)
        {
            foreach (var (socket, endPoint) in _listeners)
            {
                socket.Dispose();
                DeleteSocketFile(endPoint);
            }

            _listeners.Clear();
            throw new BlockException(Errno.EIO, $"Failed to bind socket: {e.Message}", e);
        }

        foreach (var (socket, endPoint) in _listeners)
        {
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(socket, endPoint)));
        }
    }

    private static Socket Bind(EndPoint endPoint)
    {
        var unix = endPoint is UnixDomainSocketEndPoint;
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, unix ? ProtocolType.Unspecified : ProtocolType.Tcp);
        try
        {
            if (unix)
            {
                // A socket file left by an earlier run would make bind fail; QEMU removes it too.
                DeleteSocketFile(endPoint);
            }
            else
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            }

            socket.Bind(endPoint);
            socket.Listen(128);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void DeleteSocketFile(EndPoint endPoint)
    {
        if (endPoint is UnixDomainSocketEndPoint && endPoint.ToString() is { Length: > 0 } path && path[0] != '\0')
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
                // Not there or not ours to remove: bind will report the real problem.
            }
        }
    }

    private async Task AcceptLoopAsync(Socket listener, EndPoint endPoint)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                // At max-connections, stop accepting until a connection ends, as QEMU does: a new
                // client waits in the listen backlog instead of being refused.
                if (_slots is not null)
                {
                    await _slots.WaitAsync(_stop.Token).ConfigureAwait(false);
                }

                try
                {
                    client = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                }
                catch
                {
                    _slots?.Release();
                    throw;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // Transient (a client that reset before accept, descriptor exhaustion): keep listening.
                NbdLog.AcceptFailed(_log, endPoint, e);
                await Task.Delay(10).ConfigureAwait(false);
                continue;
            }

            var remote = client.RemoteEndPoint?.ToString() is { Length: > 0 } r ? r : endPoint.ToString() ?? "?";

            if (client.ProtocolType == ProtocolType.Tcp)
            {
                client.NoDelay = true;
                SameHostTcp.AvoidPacing(client);
                if (_options.KeepAlive)
                {
                    client.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                }
            }

            SetSendBuffer(client);
            var connection = new NbdConnection(this, client, Interlocked.Increment(ref _nextId), _log);
            NbdLog.Accepted(_log, connection.Id, remote);
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Interlocked.Increment(ref _connectionCount);
            _connections[connection] = RunConnectionAsync(connection, gate.Task);
            gate.SetResult();
        }
    }

    /// <summary>
    /// Asks for a send buffer of <see cref="SendBufferBytes"/> (the kernel doubles it, within
    /// net.core.wmem_max); QEMU 10.1's NBD server enlarges its send buffer too. The default unix-socket buffer (208 KiB) is
    /// smaller than one 256 KiB READ reply, so every large reply went out in pieces, each waiting for
    /// the client to drain the last. Best effort: a kernel that refuses keeps its default.
    /// </summary>
    private static void SetSendBuffer(Socket client)
    {
        try
        {
            if (client.SendBufferSize < SendBufferBytes)
            {
                client.SendBufferSize = SendBufferBytes;
            }
        }
        catch (SocketException)
        {
        }
    }

    /// <summary>Runs a connection once it is registered, and unregisters it when it ends.</summary>
    private async Task RunConnectionAsync(NbdConnection connection, Task registered)
    {
        await registered.ConfigureAwait(false);
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            Interlocked.Decrement(ref _connectionCount);
            _slots?.Release();
        }
    }

    /// <summary>Adds an export; clients can reach it at once.</summary>
    public void AddExport(NbdExportOptions export)
    {
        if (export.Writable && export.Node.IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Cannot export read-only node '{export.Node.NodeName}' as writable");
        }

        if (!_exports.TryAdd(export.Name, new NbdExport(export)))
        {
            throw new BlockException(Errno.EEXIST, $"NBD export '{export.Name}' already exists");
        }

        NbdLog.ExportAdded(_log, export.Name, export.Node.NodeName, export.Writable);
    }

    /// <summary>
    /// Removes an export. Safe mode refuses while clients are connected (EBUSY); hard mode cuts its
    /// connections and waits for them to end.
    /// </summary>
    public async ValueTask RemoveExportAsync(string name, bool hard)
    {
        if (!_exports.TryGetValue(name, out var export))
        {
            throw new BlockException(Errno.ENOENT, $"Export '{name}' is not found");
        }

        var connections = export.TryRemove(hard)
            ?? throw new BlockException(Errno.EBUSY, $"Export '{name}' still in use");
        _exports.TryRemove(new KeyValuePair<string, NbdExport>(name, export));
        var running = new List<Task>();
        foreach (var c in connections)
        {
            c.Abort();
            if (_connections.TryGetValue(c, out var task))
            {
                running.Add(task);
            }
        }

        await Task.WhenAll(running).ConfigureAwait(false);
        NbdLog.ExportRemoved(_log, name, hard);
    }

    /// <summary>Stops listening, lets requests in flight finish, closes every connection and removes unix socket files.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var (socket, _) in _listeners)
        {
            socket.Dispose();
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        foreach (var (_, endPoint) in _listeners)
        {
            DeleteSocketFile(endPoint);
        }

        foreach (var c in _connections.Keys)
        {
            c.CloseGracefully();
        }

        // A client that stopped reading its replies would hold the writer forever: give up on it.
        var all = Task.WhenAll(_connections.Values);
        if (await Task.WhenAny(all, Task.Delay(s_closeGrace)).ConfigureAwait(false) != all)
        {
            foreach (var c in _connections.Keys)
            {
                c.Abort();
            }
        }

        await all.ConfigureAwait(false);
        foreach (var export in _exports.Values)
        {
            export.TryRemove(true);
        }

        _exports.Clear();
        _stop.Dispose();
    }
}
