namespace ExportServer.Block.Filters.Throttle;

/// <summary>
/// A throttle-group object: one set of leaky buckets shared by every throttle node that names the
/// group. A request that may run is counted at once; the others wait, first come first served per
/// direction, on a timer set for when the buckets will have leaked enough (no thread waits).
/// </summary>
internal sealed class ThrottleGroup : IDisposable
{
    private readonly object _gate = new();
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly ThrottleState _state;
    private readonly Queue<Waiter>[] _queues = [new(), new()];
    private readonly ITimer?[] _timers = new ITimer?[2];
    private int _members;

    public ThrottleGroup(string id, ThrottleConfig config, TimeProvider? time = null)
    {
        Id = id;
        Config = config;
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
        _state = new ThrottleState(config, 0);
    }

    public string Id { get; }

    public ThrottleConfig Config { get; }

    /// <summary>Throttle nodes using the group; a group in use cannot be deleted.</summary>
    public int MemberCount => Volatile.Read(ref _members);

    public void AddMember() => Interlocked.Increment(ref _members);

    public void RemoveMember() => Interlocked.Decrement(ref _members);

    private long NowNs => _time.GetElapsedTime(_start).Ticks * 100;

    /// <summary>Completes when a request of <paramref name="bytes"/> may run; the request is then counted.</summary>
    public ValueTask WaitAsync(long bytes, bool isWrite)
    {
        var dir = isWrite ? 1 : 0;
        Waiter waiter;
        lock (_gate)
        {
            var queue = _queues[dir];
            var wait = _state.ComputeWait(isWrite, NowNs);
            if (queue.Count == 0 && wait == 0)
            {
                _state.Account(isWrite, bytes);
                return ValueTask.CompletedTask;
            }

            waiter = new Waiter(bytes);
            queue.Enqueue(waiter);
            if (queue.Count == 1)
            {
                Arm(dir, wait);
            }
        }

        return new ValueTask(waiter.Task);
    }

    /// <summary>Releases the waiters of one direction that may run now and sets the timer for the next.</summary>
    private void OnTimer(int dir)
    {
        List<Waiter>? released = null;
        lock (_gate)
        {
            var queue = _queues[dir];
            while (queue.Count > 0)
            {
                var wait = _state.ComputeWait(dir == 1, NowNs);
                if (wait > 0)
                {
                    Arm(dir, wait);
                    break;
                }

                var w = queue.Dequeue();
                _state.Account(dir == 1, w.Bytes);
                (released ??= new()).Add(w);
            }
        }

        if (released is not null)
        {
            foreach (var w in released)
            {
                w.TrySetResult();
            }
        }
    }

    private void Arm(int dir, long waitNs)
    {
        var due = TimeSpan.FromTicks(Math.Max(waitNs / 100, 0));
        var timer = _timers[dir] ??= _time.CreateTimer(_ => OnTimer(dir), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        timer.Change(due, Timeout.InfiniteTimeSpan);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var t in _timers)
            {
                t?.Dispose();
            }
        }
    }

    private sealed class Waiter(long bytes) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public long Bytes { get; } = bytes;
    }
}
