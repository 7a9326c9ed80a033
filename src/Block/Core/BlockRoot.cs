using System.Runtime.CompilerServices;

namespace ExportServer.Block.Core;

/// <summary>
/// What an export or job holds instead of a node (QEMU's BlockBackend): a nameless forwarder to
/// one node of the graph that can be pointed at another node after a drain, so that an export
/// follows graph changes such as a snapshot putting an overlay on top of the exported node.
/// It is not entered in the graph; it counts as one user of its current node.
/// </summary>
public sealed class BlockRoot : ForwardingNode
{
    private readonly object _gate = new();
    private BlockChild _child;

    /// <summary>Set while a swap holds new requests; they wait for it before choosing a node.</summary>
    private TaskCompletionSource? _held;

    /// <summary>Requests that passed the gate and may be on the current node.</summary>
    private int _forwarding;

    private TaskCompletionSource? _forwardingDone;

    public BlockRoot(BlockNode node)
        : base(node.NodeName, node.IsReadOnly)
    {
        AttachChild("root", ChildRole.Other, node);
        _child = Children[0];
        Sync();
    }

    /// <summary>The node the root forwards to.</summary>
    public BlockNode Node => _child.Node;

    public override BlockNode Target => _child.Node;

    public override string DriverName => Node.DriverName;

    public override string FileName => Node.FileName;

    public override bool DiscardUnmap { get => Node.DiscardUnmap; set => Node.DiscardUnmap = value; }

    /// <summary>Takes over the node's size, mode and limits (after a resize or a reopen).</summary>
    public void Sync()
    {
        IsReadOnly = Node.IsReadOnly;
        Limits = Node.Limits;
    }

    /// <summary>
    /// Points the root at <paramref name="node"/>. From the start of the call, new requests are
    /// held; once the requests already forwarded to the old node have finished, the node is
    /// replaced and the held requests go on to the new node. Swaps run one after another.
    /// </summary>
    public async ValueTask SwapAsync(BlockNode node)
    {
        TaskCompletionSource held;
        while (true)
        {
            Task other;
            lock (_gate)
            {
                if (_held is null)
                {
                    held = _held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    break;
                }

                other = _held.Task;
            }

            await other.ConfigureAwait(false);
        }

        try
        {
            Task drained;
            lock (_gate)
            {
                if (_forwarding == 0)
                {
                    drained = Task.CompletedTask;
                }
                else
                {
                    _forwardingDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    drained = _forwardingDone.Task;
                }
            }

            await drained.ConfigureAwait(false);
            ReplaceChild(_child, node);
            _child = Children[0];
            Sync();
        }
        finally
        {
            lock (_gate)
            {
                _held = null;
            }

            held.TrySetResult();
        }
    }

    /// <summary>Passes the gate: at once unless a swap holds requests, else after that swap. Dispose the pass when the request is done.</summary>
    private ValueTask<Pass> PassAsync()
    {
        lock (_gate)
        {
            if (_held is null)
            {
                _forwarding++;
                return ValueTask.FromResult(new Pass(this));
            }
        }

        return WaitAndPassAsync();
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Pass> WaitAndPassAsync()
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_held is null)
                {
                    _forwarding++;
                    return new Pass(this);
                }

                wait = _held.Task;
            }

            await wait.ConfigureAwait(false);
        }
    }

    private void Done()
    {
        TaskCompletionSource? done = null;
        lock (_gate)
        {
            if (--_forwarding == 0 && _forwardingDone is not null)
            {
                done = _forwardingDone;
                _forwardingDone = null;
            }
        }

        done?.TrySetResult();
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.ReadAsync(offset, buffer).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.WriteAsync(offset, buffer, flags).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.DiscardAsync(offset, length).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask FlushCoreAsync()
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.FlushAsync().ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            return await Target.GetBlockStatusAsync(offset, length).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask TruncateCoreAsync(long length)
    {
        using (await PassAsync().ConfigureAwait(false))
        {
            await Target.TruncateAsync(length).ConfigureAwait(false);
        }
    }

    /// <summary>A request past the gate; disposing it lets a waiting swap go on.</summary>
    private readonly struct Pass(BlockRoot root) : IDisposable
    {
        public void Dispose() => root.Done();
    }
}
