using System.Buffers;
using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Filters.CopyBeforeWrite;

/// <summary>
/// QEMU's copy-before-write filter: before a write, zero-write or discard changes a cluster of the
/// filtered node for the first time, the cluster's old data is copied to the target, so the target
/// and the untouched rest of the source together keep the node as it was when the filter was
/// opened. That point in time is read through a snapshot-access node (<see cref="ISnapshotAccess"/>).
/// The copy hangs on the source's write notifiers, so it also covers writes that reach the source
/// without passing through this node (an export left on the source).
/// </summary>
internal sealed class CopyBeforeWriteNode : FilterNode, ISnapshotAccess
{
    /// <summary>Bytes per copy request, as QEMU's block-copy buffer.</summary>
    private const int CopyChunk = 1024 * 1024;

    private readonly BlockNode _target;
    private readonly OnCbwError _onError;
    private readonly TimeSpan _timeout;
    private readonly WriteNotifier _notifier;

    /// <summary>Clusters whose old data still has to be copied before they change.</summary>
    private readonly DirtyBitmap _toCopy;

    /// <summary>Clusters whose old data is on the target.</summary>
    private readonly DirtyBitmap _done;

    /// <summary>Clusters the snapshot may read: all it keeps (the copy set at open), less what it gave up.</summary>
    private readonly DirtyBitmap _access;

    /// <summary>One copy per cluster at a time: a second write waits for the first one's copy.</summary>
    private readonly RangeLock _copies = new();

    /// <summary>Guards <see cref="_done"/>, <see cref="_access"/>, <see cref="_frozenReads"/> and <see cref="_snapshotError"/> together.</summary>
    private readonly Lock _state = new();

    /// <summary>Snapshot reads in progress on the source: a write to their range waits for them.</summary>
    private readonly List<FrozenRead> _frozenReads = [];

    /// <summary>Copies that outlived their cbw-timeout; closing waits for them.</summary>
    private readonly List<Task> _late = [];

    private readonly IDisposable[] _shown;

    private Exception? _snapshotError;

    public CopyBeforeWriteNode(
        string nodeName, bool readOnly, BlockNode source, BlockNode target, DirtyBitmap? bitmap, OnCbwError onError, TimeSpan timeout, long minClusterSize)
        : base(nodeName, readOnly, source)
    {
        _target = target;
        _onError = onError;
        _timeout = timeout;
        AttachChild("target", ChildRole.Other, target, ChildUse.Data);
        ClusterSize = Math.Max(Math.Max(DefaultCluster, minClusterSize), ImageInfoQuery.DriverInfo(target)?.ClusterSize ?? 0);
        _toCopy = new DirtyBitmap(source.Length, ClusterSize);
        if (bitmap is null)
        {
            _toCopy.SetAll();
        }
        else
        {
            _toCopy.Merge(bitmap);
        }

        _done = new DirtyBitmap(source.Length, ClusterSize);
        _access = new DirtyBitmap(source.Length, ClusterSize);
        _access.Merge(_toCopy);
        _notifier = (_, offset, length) => CopyBeforeWriteAsync(offset, length);
        source.WriteNotifiers.Add(_notifier);
        // Shown as QEMU shows them: the copy bitmap on the source, then done and access on the filter.
        _shown = [source.ShowAnonymousBitmap(_toCopy), ShowAnonymousBitmap(_done), ShowAnonymousBitmap(_access)];
    }

    /// <summary>QEMU's block-copy cluster: 64 KiB, or the target's cluster or min-cluster-size when larger.</summary>
    public const long DefaultCluster = 64 * 1024;

    public long ClusterSize { get; }

    public override string DriverName => "copy-before-write";

    /// <summary>
    /// Copies the old data of the clusters of [offset, offset+length) not yet copied, then waits for
    /// snapshot reads of the source in that range. A failure (or a copy slower than cbw-timeout) fails
    /// the write with break-guest-write, or breaks the snapshot and lets the write go on.
    /// </summary>
    private async ValueTask CopyBeforeWriteAsync(long offset, long length)
    {
        if (Volatile.Read(ref _snapshotError) is not null)
        {
            return;
        }

        var start = offset / ClusterSize * ClusterSize;
        var end = Math.Min((offset + length + ClusterSize - 1) / ClusterSize * ClusterSize, Child.Length);
        if (start >= end)
        {
            return;
        }

        Exception? error = null;
        var copy = CopyAsync(start, end - start);
        if (_timeout > TimeSpan.Zero && await Task.WhenAny(copy, Task.Delay(_timeout)).ConfigureAwait(false) != copy)
        {
            error = new BlockException(Errno.ETIMEDOUT, "Connection timed out");
            lock (_late)
            {
                _late.Add(copy);
            }
        }
        else
        {
            try
            {
                await copy.ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                error = e;
            }
        }

        if (error is not null && _onError == OnCbwError.BreakGuestWrite)
        {
            throw BlockException.From(error);
        }

        if (error is not null)
        {
            lock (_state)
            {
                _snapshotError ??= error;
            }
        }

        await WaitForFrozenReadsAsync(start, end).ConfigureAwait(false);
    }

    private async Task CopyAsync(long start, long length)
    {
        using var held = await _copies.AcquireAsync(start, length).ConfigureAwait(false);
        var runs = _toCopy.Claim(start, length);
        for (var i = 0; i < runs.Count; i++)
        {
            try
            {
                await CopyRunAsync(runs[i].Offset, runs[i].Length).ConfigureAwait(false);
            }
            catch
            {
                // What was not copied stays to be copied by the next write there.
                for (var j = i; j < runs.Count; j++)
                {
                    _toCopy.Set(runs[j].Offset, runs[j].Length);
                }

                throw;
            }

            lock (_state)
            {
                _done.Set(runs[i].Offset, runs[i].Length);
            }
        }
    }

    private async ValueTask CopyRunAsync(long offset, long length)
    {
        var size = (int)Math.Min(length, CopyChunk);
        using var owner = MemoryPool<byte>.Shared.Rent(size);
        for (var pos = offset; pos < offset + length; pos += size)
        {
            var buffer = owner.Memory[..(int)Math.Min(size, offset + length - pos)];
            await Child.ReadAsync(pos, buffer).ConfigureAwait(false);
            await _target.WriteAsync(pos, buffer).ConfigureAwait(false);
        }
    }

    private async ValueTask WaitForFrozenReadsAsync(long start, long end)
    {
        while (true)
        {
            Task wait;
            lock (_state)
            {
                var blocker = _frozenReads.Find(r => r.Start < end && start < r.End);
                if (blocker is null)
                {
                    return;
                }

                wait = blocker.Released.Task;
            }

            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Where the point-in-time data of [offset, offset+length) starts to be read from: the length of
    /// the first part that is all on the target or all still on the source, and for the source a
    /// registered read that writes there wait for. EACCES when the snapshot is broken or does not
    /// keep the whole range.
    /// </summary>
    private (long Length, BlockNode From, FrozenRead? Frozen) BeginSnapshotRead(long offset, long length)
    {
        lock (_state)
        {
            var accessible = _access.Extent(offset, length);
            if (_snapshotError is not null || !accessible.Dirty || accessible.Length < length)
            {
                throw new BlockException(Errno.EACCES, "Permission denied");
            }

            var (n, done) = _done.Extent(offset, length);
            if (done)
            {
                return (n, _target, null);
            }

            var frozen = new FrozenRead(offset, offset + n);
            _frozenReads.Add(frozen);
            return (n, Child, frozen);
        }
    }

    private void EndSnapshotRead(FrozenRead? frozen)
    {
        if (frozen is null)
        {
            return;
        }

        lock (_state)
        {
            _frozenReads.Remove(frozen);
        }

        frozen.Released.TrySetResult();
    }

    public async ValueTask ReadSnapshotAsync(long offset, Memory<byte> buffer)
    {
        var pos = 0;
        while (pos < buffer.Length)
        {
            var (n, from, frozen) = BeginSnapshotRead(offset + pos, buffer.Length - pos);
            try
            {
                await from.ReadAsync(offset + pos, buffer.Slice(pos, (int)n)).ConfigureAwait(false);
            }
            finally
            {
                EndSnapshotRead(frozen);
            }

            pos += (int)n;
        }
    }

    public async ValueTask<BlockStatus> GetSnapshotBlockStatusAsync(long offset, long length)
    {
        var (n, from, frozen) = BeginSnapshotRead(offset, length);
        try
        {
            // The snapshot is one layer: what the chain below says, as this node's own content.
            var s = await from.GetBlockStatusAboveAsync(offset, n).ConfigureAwait(false);
            return new BlockStatus(Math.Min(s.Length, n), s.Flags | BlockStatusFlags.Allocated);
        }
        finally
        {
            EndSnapshotRead(frozen);
        }
    }

    /// <summary>QEMU's cbw_co_pdiscard_snapshot: whole clusters only; they are no longer kept, copied or readable.</summary>
    public async ValueTask DiscardSnapshotAsync(long offset, long length)
    {
        var start = (offset + ClusterSize - 1) / ClusterSize * ClusterSize;
        var end = (offset + length) / ClusterSize * ClusterSize;
        if (end <= start)
        {
            return;
        }

        lock (_state)
        {
            _access.Reset(start, end - start);
        }

        _toCopy.Reset(start, end - start);
        await _target.DiscardAsync(start, end - start).ConfigureAwait(false);
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        Child.WriteNotifiers.Remove(_notifier);
        foreach (var shown in _shown)
        {
            shown.Dispose();
        }

        Task[] late;
        lock (_late)
        {
            late = [.. _late];
        }

        try
        {
            await Task.WhenAll(late).ConfigureAwait(false);
        }
        catch
        {
            // Their failure was reported to the write they timed out for.
        }
    }

    private sealed class FrozenRead(long start, long end)
    {
        public long Start { get; } = start;

        public long End { get; } = end;

        public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
