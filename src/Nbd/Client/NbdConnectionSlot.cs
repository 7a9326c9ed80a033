using System.Runtime.CompilerServices;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Client;

/// <summary>
/// One of an nbd node's connections and its reconnection. When the connection is lost, a background
/// loop connects again; requests wait for it up to reconnect-delay from the moment of the loss (and are
/// then sent again), or fail at once with EIO when the delay is 0 or has passed.
/// </summary>
internal sealed class NbdConnectionSlot
{
    private readonly NbdRemote _remote;
    private readonly CancellationToken _closing;
    private readonly object _gate = new();
    private volatile NbdClient _client;
    private Task<NbdClient>? _reconnecting;
    private long _lostAt;

    public NbdConnectionSlot(NbdRemote remote, NbdClient client, CancellationToken closing)
    {
        _remote = remote;
        _client = client;
        _closing = closing;
    }

    /// <summary>Whether requests sent here now go out at once (a hint: the state may change right after).</summary>
    public bool IsUp => Volatile.Read(ref _reconnecting) is null && !_client.IsBroken;

    /// <summary>Requests in flight on the current connection.</summary>
    public int Load => _client.InFlight;

    /// <summary>
    /// Runs <paramref name="op"/> on this slot's connection; when the connection breaks under it, starts
    /// the reconnection and runs it again on the new one (unless reconnect-delay is 0).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RunAsync<TState>(Func<NbdClient, TState, ValueTask> op, TState state)
    {
        while (true)
        {
            var client = await GetClientAsync().ConfigureAwait(false);
            try
            {
                await op(client, state).ConfigureAwait(false);
                return;
            }
            catch (BlockException) when (client.IsBroken)
            {
                StartReconnect(client);
                if (_remote.ReconnectDelay <= TimeSpan.Zero)
                {
                    throw;
                }
            }
        }
    }

    private ValueTask<NbdClient> GetClientAsync()
    {
        Task<NbdClient> reconnecting;
        long deadline;
        lock (_gate)
        {
            if (_reconnecting is null && !_client.IsBroken)
            {
                return ValueTask.FromResult(_client);
            }

            StartReconnect(_client);
            reconnecting = _reconnecting ?? throw new BlockException(Errno.ESHUTDOWN, $"Node '{_remote.NodeName}' is closing");
            deadline = _lostAt + (long)_remote.ReconnectDelay.TotalMilliseconds;
        }

        return WaitForReconnectAsync(reconnecting, deadline);
    }

    private async ValueTask<NbdClient> WaitForReconnectAsync(Task<NbdClient> reconnecting, long deadline)
    {
        var remaining = deadline - Environment.TickCount64;
        if (remaining > 0)
        {
            try
            {
                return await reconnecting.WaitAsync(TimeSpan.FromMilliseconds(remaining)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Fall through to the error below.
            }
            catch (OperationCanceledException e)
            {
                throw new BlockException(Errno.ESHUTDOWN, $"Node '{_remote.NodeName}' is closing", e);
            }
        }
        else if (reconnecting.IsCompletedSuccessfully)
        {
            return reconnecting.Result;
        }

        throw BlockException.Io($"Node '{_remote.NodeName}': NBD connection to {_remote.FileName} lost, reconnecting");
    }

    /// <summary>Starts the background reconnection once per lost connection.</summary>
    private void StartReconnect(NbdClient broken)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_client, broken) || _reconnecting is not null || _closing.IsCancellationRequested)
            {
                return;
            }

            _lostAt = Environment.TickCount64;
            NbdClientLog.ConnectionLost(_remote.Log, _remote.NodeName, _remote.FileName);
            _reconnecting = ReconnectAsync(broken);
        }
    }

    private async Task<NbdClient> ReconnectAsync(NbdClient broken)
    {
        await Task.Yield();
        await broken.DisposeAsync().ConfigureAwait(false);
        var pause = NbdNode.FirstRetry;
        while (true)
        {
            _closing.ThrowIfCancellationRequested();
            try
            {
                var client = await NbdNode.ConnectAsync(_remote.Address, _remote.Export, TimeSpan.Zero, _closing).ConfigureAwait(false);
                if (client.Info.Size != _remote.Size)
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    throw BlockException.Io($"export size changed from {_remote.Size} to {client.Info.Size}");
                }

                lock (_gate)
                {
                    _client = client;
                    _reconnecting = null;
                }

                NbdClientLog.Reconnected(_remote.Log, _remote.NodeName, _remote.FileName);
                return client;
            }
            catch (BlockException e)
            {
                NbdClientLog.ReconnectFailed(_remote.Log, _remote.NodeName, e.Message);
            }

            await Task.Delay(pause, _closing).ConfigureAwait(false);
            pause = NbdNode.NextPause(pause);
        }
    }

    /// <summary>Ends the connection; the node has cancelled the closing token first, which stops a reconnection.</summary>
    public async ValueTask DisposeAsync()
    {
        Task<NbdClient>? reconnecting;
        lock (_gate)
        {
            reconnecting = _reconnecting;
        }

        if (reconnecting is not null)
        {
            try
            {
                await reconnecting.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Closing stopped the reconnection.
            }
        }

        await _client.DisposeAsync().ConfigureAwait(false);
    }
}
