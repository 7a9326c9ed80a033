using System.Runtime.CompilerServices;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;
using Microsoft.Extensions.Logging;

namespace ExportServer.Nbd.Client;

/// <summary>
/// A remote NBD export as a protocol node (QEMU's driver=nbd). Limits and capabilities come from the
/// handshake. With multi-conn the node holds several connections to the export and spreads requests
/// over them; each connection reconnects on its own when lost (<see cref="NbdConnectionSlot"/>).
/// </summary>
internal sealed class NbdNode : BlockNode
{
    /// <summary>NBD's default maximum payload (NBD_MAX_BUFFER_SIZE in QEMU).</summary>
    private const int MaxBuffer = 32 * 1024 * 1024;

    /// <summary>The first pause between connection attempts; it doubles up to <see cref="s_lastRetry"/>.</summary>
    internal static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(50);

    private static readonly TimeSpan s_lastRetry = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan s_handshakeLimit = TimeSpan.FromSeconds(10);

    private readonly NbdServerAddress _address;
    private readonly CancellationTokenSource _closing = new();
    private readonly string _fileName;
    private readonly long _maxRange;
    private readonly NbdConnectionSlot[] _slots;
    private int _next;

    /// <summary>A node over <paramref name="clients"/>, connections to one export that all negotiated the same size.</summary>
    public NbdNode(string nodeName, bool readOnly, NbdServerAddress address, string export, TimeSpan reconnectDelay, IReadOnlyList<NbdClient> clients, ILogger log)
        : base(nodeName, readOnly)
    {
        _address = address;
        _fileName = address.FileName(export);
        var info = clients[0].Info;
        var remote = new NbdRemote(nodeName, address, export, _fileName, info.Size, reconnectDelay, log);
        _slots = clients.Select(c => new NbdConnectionSlot(remote, c, _closing.Token)).ToArray();
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

    public override bool IsRemote => true;

    public override string FileName => _fileName;

    /// <summary>The export as negotiated on the first connection; reconnections must match its size.</summary>
    public NbdExportInfo Info { get; }

    /// <summary>Connections the node holds (1 unless multi-conn).</summary>
    public int ConnectionCount => _slots.Length;

    /// <summary>Requests in flight on each connection now.</summary>
    public int[] ConnectionLoads => _slots.Select(s => s.Load).ToArray();

    /// <summary>
    /// Connects and negotiates the export, retrying any failure (no server yet, no such export yet) until
    /// <paramref name="openTimeout"/> has passed, as QEMU's open-timeout does.
    /// </summary>
    public static async Task<NbdClient> ConnectAsync(NbdServerAddress address, string export, TimeSpan openTimeout, CancellationToken ct)
    {
        var deadline = Environment.TickCount64 + (long)openTimeout.TotalMilliseconds;
        var pause = FirstRetry;
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
                pause = NextPause(pause);
            }
        }
    }

    /// <summary>The pause after <paramref name="pause"/> between connection attempts.</summary>
    internal static TimeSpan NextPause(TimeSpan pause) => pause * 2 < s_lastRetry ? pause * 2 : s_lastRetry;

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

    /// <summary>
    /// A flush goes to every connection and completes when all have answered. With multi-conn the spec
    /// makes a flush on one connection cover the writes answered on any of them; it is sent on each
    /// anyway, so that a server whose caches are per connection in spite of the flag still gets every
    /// connection's writes to disk. Flushes are rare (a job's end, a guest's flush): the cost is small.
    /// </summary>
    protected override async ValueTask FlushCoreAsync()
    {
        if (!Info.Has(NbdConstants.FlagSendFlush))
        {
            return;
        }

        if (_slots.Length == 1)
        {
            await _slots[0].RunAsync(static (c, _) => c.FlushAsync(), 0).ConfigureAwait(false);
            return;
        }

        var flushes = new Task[_slots.Length];
        for (var i = 0; i < flushes.Length; i++)
        {
            flushes[i] = _slots[i].RunAsync(static (c, _) => c.FlushAsync(), 0).AsTask();
        }

        await Task.WhenAll(flushes).ConfigureAwait(false);
    }

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

    /// <summary>
    /// Runs a request on the connection with the fewest requests in flight among those that are up,
    /// looking from a rotating start so that equal loads take turns; when none is up, on the one the
    /// rotation names, which waits for its reconnection.
    /// </summary>
    private ValueTask RunAsync<TState>(Func<NbdClient, TState, ValueTask> op, TState state)
    {
        var slots = _slots;
        if (slots.Length == 1)
        {
            return slots[0].RunAsync(op, state);
        }

        var start = (int)((uint)Interlocked.Increment(ref _next) % (uint)slots.Length);
        NbdConnectionSlot? best = null;
        var bestLoad = int.MaxValue;
        for (var i = 0; i < slots.Length && bestLoad > 0; i++)
        {
            var slot = slots[(start + i) % slots.Length];
            var load = slot.Load;
            if (slot.IsUp && load < bestLoad)
            {
                (best, bestLoad) = (slot, load);
            }
        }

        return (best ?? slots[start]).RunAsync(op, state);
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        _closing.Cancel();
        foreach (var slot in _slots)
        {
            await slot.DisposeAsync().ConfigureAwait(false);
        }

        _closing.Dispose();
        _address.Tls?.Credentials.RemoveUser();
    }
}
