using System.Runtime.CompilerServices;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;
using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Client;

/// <summary>
/// A remote NBD export as a protocol node (QEMU's driver=nbd). Limits and capabilities come from the
/// handshake. When the connection is lost, a background loop reconnects; requests wait for it up to
/// reconnect-delay from the moment of the loss (and are then sent again), or fail at once with EIO
/// when the delay is 0 or has passed.
/// </summary>
internal sealed class NbdNode : BlockNode
{
    /// <summary>NBD's default maximum payload (NBD_MAX_BUFFER_SIZE in QEMU).</summary>
    private const int MaxBuffer = 32 * 1024 * 1024;

    private static readonly TimeSpan s_firstRetry = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan s_lastRetry = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan s_handshakeLimit = TimeSpan.FromSeconds(10);

    private readonly NbdServerAddress _address;
    private readonly string _export;
    private readonly TimeSpan _reconnectDelay;
    private readonly ILogger _log;
    private readonly object _gate = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly string _fileName;
    private readonly long _maxRange;
    private NbdClient _client;
    private Task<NbdClient>? _reconnecting;
    private long _lostAt;

    public NbdNode(string nodeName, bool readOnly, NbdServerAddress address, string export, TimeSpan reconnectDelay, NbdClient client, ILogger log)
        : base(nodeName, readOnly)
    {
        _address = address;
        _export = export;
        _reconnectDelay = reconnectDelay;
        _client = client;
        _log = log;
        _fileName = address.FileName(export);
        var info = client.Info;
        Info = info;
        Length = (long)info.Size;
        var min = (int)info.MinimumBlock;
        if (min == 0)
        {
            // As QEMU: without an advertised minimum, sub-sector requests only for exports that need them.
            min = info.Size % 512 != 0 || info.BaseAllocationId is not null ? 1 : 512;
        }

        var max = info.MaximumBlock == 0 ? MaxBuffer : (int)Math.Min(info.MaximumBlock, MaxBuffer);
        Limits = new BlockLimits(
            RequestAlignment: min,
            MaxTransfer: Math.Max(max / min * min, min),
            OptimalTransfer: (int)Math.Min(info.PreferredBlock, MaxBuffer));
        _maxRange = int.MaxValue / min * min;
        var zeroes = info.Has(NbdConstants.FlagSendWriteZeroes);
        Capabilities = new BlockCapabilities(
            Fua: info.Has(NbdConstants.FlagSendFua),
            WriteZeroes: zeroes,
            FastZero: zeroes && info.Has(NbdConstants.FlagSendFastZero));
    }

    public override string DriverName => "nbd";

    public override string FileName => _fileName;

    /// <summary>The export as negotiated on the first connection; reconnections must match its size.</summary>
    public NbdExportInfo Info { get; }


    /// <summary>
    /// Connects and negotiates the export, retrying any failure (no server yet, no such export yet) until
    /// <paramref name="openTimeout"/> has passed, as QEMU's open-timeout does.
    /// </summary>
    public static async Task<NbdClient> ConnectAsync(NbdServerAddress address, string export, TimeSpan openTimeout, CancellationToken ct)
    {
        var deadline = Environment.TickCount64 + (long)openTimeout.TotalMilliseconds;
        var pause = s_firstRetry;
        while (true)
        {
            try
            {
                using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
                limit.CancelAfter(s_handshakeLimit);
                return await NbdClient.ConnectAsync(address.ToEndPoint(), export, limit.Token, address.KeepAlive, address.Tls).ConfigureAwait(false);
            }
            catch (BlockException) when (Environment.TickCount64 < deadline && !ct.IsCancellationRequested)
            {
                await Task.Delay(pause, ct).ConfigureAwait(false);
                pause = pause * 2 < s_lastRetry ? pause * 2 : s_lastRetry;
            }
        }
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        RunAsync(static (c, s) => c.ReadAsync(s.Offset, s.Buffer), (Offset: offset, Buffer: buffer));

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        RunAsync(static (c, s) => c.WriteAsync(s.Offset, s.Buffer, s.Fua), (Offset: offset, Buffer: buffer, Fua: (flags & WriteFlags.Fua) != 0));

    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        var fast = (flags & ZeroFlags.NoFallback) != 0;
        if (fast && !CanFastZero)
        {
            throw BlockException.NotSupported($"NBD export of node '{NodeName}' cannot zero quickly");
        }

        var state = (Offset: offset, Length: 0L, MayUnmap: (flags & ZeroFlags.MayUnmap) != 0, Fast: fast, Fua: (flags & ZeroFlags.Fua) != 0 && SupportsFua);
        for (var end = offset + length; state.Offset < end; state.Offset += state.Length)
        {
            state.Length = Math.Min(end - state.Offset, Limits.MaxTransfer);
            await RunAsync(static (c, s) => c.WriteZeroesAsync(s.Offset, s.Length, s.MayUnmap, s.Fast, s.Fua), state).ConfigureAwait(false);
        }
    }

    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        if (!DiscardUnmap || !Info.Has(NbdConstants.FlagSendTrim))
        {
            return;
        }

        var state = (Offset: offset, Length: 0L);
        for (var end = offset + length; state.Offset < end; state.Offset += state.Length)
        {
            state.Length = Math.Min(end - state.Offset, _maxRange);
            await RunAsync(static (c, s) => c.TrimAsync(s.Offset, s.Length), state).ConfigureAwait(false);
        }
    }

    protected override ValueTask FlushCoreAsync() =>
        Info.Has(NbdConstants.FlagSendFlush) ? RunAsync(static (c, _) => c.FlushAsync(), 0) : ValueTask.CompletedTask;

    /// <summary>base:allocation mapped as QEMU does: a hole has no data, zero reads as zeroes; everything is allocated here.</summary>
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        if (Info.BaseAllocationId is null)
        {
            return new BlockStatus(length, BlockStatusFlags.Data | BlockStatusFlags.Allocated);
        }

        var result = new StrongBox<NbdExtent>();
        await RunAsync(
            static async (c, s) => s.Result.Value = await c.BlockStatusAsync(s.Offset, s.Length).ConfigureAwait(false),
            (Offset: offset, Length: Math.Min(length, _maxRange), Result: result)).ConfigureAwait(false);
        var (extentLength, state) = result.Value;
        long a = Limits.RequestAlignment;
        if (extentLength < a)
        {
            // An extent smaller than the alignment cannot be reported alone: say "data" for the whole unit.
            return new BlockStatus(Math.Min(a, length), BlockStatusFlags.Data | BlockStatusFlags.Allocated);
        }

        var flags = BlockStatusFlags.Allocated
            | ((state & NbdConstants.StateHole) == 0 ? BlockStatusFlags.Data : BlockStatusFlags.None)
            | ((state & NbdConstants.StateZero) != 0 ? BlockStatusFlags.Zero : BlockStatusFlags.None);
        return new BlockStatus(extentLength / a * a, flags);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunAsync<TState>(Func<NbdClient, TState, ValueTask> op, TState state)
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
                if (_reconnectDelay <= TimeSpan.Zero)
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
            reconnecting = _reconnecting ?? throw new BlockException(Errno.ESHUTDOWN, $"Node '{NodeName}' is closing");
            deadline = _lostAt + (long)_reconnectDelay.TotalMilliseconds;
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
                throw new BlockException(Errno.ESHUTDOWN, $"Node '{NodeName}' is closing", e);
            }
        }
        else if (reconnecting.IsCompletedSuccessfully)
        {
            return reconnecting.Result;
        }

        throw BlockException.Io($"Node '{NodeName}': NBD connection to {_fileName} lost, reconnecting");
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
            NbdClientLog.ConnectionLost(_log, NodeName, _fileName);
            _reconnecting = ReconnectAsync(broken);
        }
    }

    private async Task<NbdClient> ReconnectAsync(NbdClient broken)
    {
        await Task.Yield();
        await broken.DisposeAsync().ConfigureAwait(false);
        var pause = s_firstRetry;
        while (true)
        {
            _closing.Token.ThrowIfCancellationRequested();
            try
            {
                var client = await ConnectAsync(_address, _export, TimeSpan.Zero, _closing.Token).ConfigureAwait(false);
                if (client.Info.Size != Info.Size)
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    throw BlockException.Io($"export size changed from {Info.Size} to {client.Info.Size}");
                }

                lock (_gate)
                {
                    _client = client;
                    _reconnecting = null;
                }

                NbdClientLog.Reconnected(_log, NodeName, _fileName);
                return client;
            }
            catch (BlockException e)
            {
                NbdClientLog.ReconnectFailed(_log, NodeName, e.Message);
            }

            await Task.Delay(pause, _closing.Token).ConfigureAwait(false);
            pause = pause * 2 < s_lastRetry ? pause * 2 : s_lastRetry;
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        Task<NbdClient>? reconnecting;
        lock (_gate)
        {
            _closing.Cancel();
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
        _closing.Dispose();
        _address.Tls?.Credentials.RemoveUser();
    }
}
