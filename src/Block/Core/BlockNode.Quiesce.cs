namespace ExportServer.Block.Core;

/// <summary>
/// Request admission and drained sections. A request enters a node with one interlocked increment
/// and one read of the quiesce counter; only while a graph change holds the node does it take the
/// slow path and wait in a queue. Work that is part of a request already in flight (a write
/// notifier's copy, a job's copy) is never held: holding it would keep its own request from ending
/// and the section from ever being drained (QEMU lets such requests through for the same reason).
/// </summary>
public abstract partial class BlockNode
{
    /// <summary>Set in an async flow that does work on behalf of requests already in flight.</summary>
    private static readonly AsyncLocal<bool> s_inFlightWork = new();

    private readonly object _gate = new();
    private int _inFlight;
    private int _quiesce;
    private TaskCompletionSource? _drained;

    /// <summary>Requests held by a drained section, in arrival order; their continuations run on release.</summary>
    private Queue<TaskCompletionSource>? _held;

    /// <summary>Whether a drained section holds new requests to this node.</summary>
    public bool IsQuiesced => Volatile.Read(ref _quiesce) != 0;

    /// <summary>
    /// Marks the rest of the calling async flow as work for requests in flight, which drained
    /// sections let through. Scoped like any AsyncLocal change: it ends with the async method that
    /// made it.
    /// </summary>
    internal static void MarkInFlightWork() => s_inFlightWork.Value = true;

    /// <summary>Waits until every request that entered this node has completed (new ones are not held).</summary>
    public Task DrainAsync()
    {
        Task drained;
        lock (_gate)
        {
            if (Volatile.Read(ref _inFlight) == 0)
            {
                return Task.CompletedTask;
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            drained = _drained.Task;
        }

        // The last request may have left between the count read above and the waiter's publication,
        // and then found no waiter to wake (Leave counts down first and looks for a waiter after).
        // With the waiter visible, one of the two now sees the other: look at the count again.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _inFlight) == 0)
        {
            SignalDrained();
        }

        return drained;
    }

    /// <summary>
    /// Begins a drained section on this node: new requests to it and to every node above it
    /// (parents, transitively) are held until the section is disposed, and the call returns once
    /// those nodes have no request in flight. Parents are drained before their children, so a
    /// parent's last requests still reach the child. The caller must not send requests of its own
    /// to the held nodes through their public methods until it ends the section.
    /// </summary>
    public async ValueTask<DrainedSection> BeginDrainedSectionAsync()
    {
        var nodes = NodesToQuiesce();
        var section = new DrainedSection(nodes);
        foreach (var n in nodes)
        {
            Interlocked.Increment(ref n._quiesce);
            await n.DrainAsync().ConfigureAwait(false);
        }

        return section;
    }

    /// <summary>Waits, holding nothing, while a drained section holds this node: a job's pause point.</summary>
    internal async ValueTask WaitWhileQuiescedAsync()
    {
        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        Leave();
    }

    /// <summary>This node and its ancestors, every parent before its children.</summary>
    private BlockNode[] NodesToQuiesce()
    {
        var order = new List<BlockNode>();
        var seen = new HashSet<BlockNode>(ReferenceEqualityComparer.Instance);
        Visit(this);
        return order.ToArray();

        void Visit(BlockNode node)
        {
            if (!seen.Add(node))
            {
                return;
            }

            foreach (var edge in node.ParentEdges)
            {
                Visit(edge.Parent);
            }

            order.Add(node);
        }
    }

    /// <summary>Ends one section on this node; the last one releases the held requests in arrival order.</summary>
    internal void Unquiesce()
    {
        Queue<TaskCompletionSource>? release = null;
        lock (_gate)
        {
            if (Interlocked.Decrement(ref _quiesce) == 0 && _held is { Count: > 0 })
            {
                release = _held;
                _held = null;
                Interlocked.Add(ref _inFlight, release.Count);
            }
        }

        if (release is not null)
        {
            // One work item releases them all: each released request runs on it until it first
            // waits, so held requests reach the driver in the order they arrived, and the graph
            // change that ended the section does not run users' requests on its own thread.
            ThreadPool.UnsafeQueueUserWorkItem(
                static queue =>
                {
                    while (queue.TryDequeue(out var waiter))
                    {
                        waiter.TrySetResult();
                    }
                },
                release,
                preferLocal: false);
        }
    }

    /// <summary>The fast path: counts the request in unless a section holds the node.</summary>
    private bool TryEnter()
    {
        Interlocked.Increment(ref _inFlight);
        if (Volatile.Read(ref _quiesce) == 0 || (s_inFlightWork.Value && Volatile.Read(ref _disposed) == 0))
        {
            return true;
        }

        Leave();
        return false;
    }

    /// <summary>The slow path after <see cref="TryEnter"/> failed: waits for the sections to end.</summary>
    private async ValueTask EnterHeldAsync()
    {
        TaskCompletionSource waiter;
        lock (_gate)
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                throw Closed();
            }

            if (Volatile.Read(ref _quiesce) == 0)
            {
                Interlocked.Increment(ref _inFlight);
                return;
            }

            // Synchronous continuations on purpose: see Unquiesce.
            waiter = new TaskCompletionSource();
            (_held ??= new Queue<TaskCompletionSource>()).Enqueue(waiter);
        }

        await waiter.Task.ConfigureAwait(false);
    }

    private void Leave()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _drained) is not null)
        {
            SignalDrained();
        }
    }

    /// <summary>Wakes the drain waiter if no request is in flight.</summary>
    private void SignalDrained()
    {
        TaskCompletionSource? done;
        lock (_gate)
        {
            done = Volatile.Read(ref _inFlight) == 0 ? _drained : null;
            if (done is not null)
            {
                _drained = null;
            }
        }

        done?.TrySetResult();
    }

    /// <summary>Closing is a section that never ends: requests still held, and any later one, fail.</summary>
    private async ValueTask CloseGateAsync()
    {
        Interlocked.Increment(ref _quiesce);
        Queue<TaskCompletionSource>? held;
        lock (_gate)
        {
            held = _held;
            _held = null;
        }

        while (held is not null && held.TryDequeue(out var waiter))
        {
            waiter.TrySetException(Closed());
        }

        await DrainAsync().ConfigureAwait(false);
    }

    private BlockException Closed() => new(Errno.ESHUTDOWN, $"Node '{NodeName}' is closed");
}
