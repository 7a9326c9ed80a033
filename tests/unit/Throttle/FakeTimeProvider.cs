namespace ExportServer.UnitTests.Throttle;

/// <summary>A clock that moves only when told; timers fire during <see cref="Advance"/> when their due time is reached.</summary>
internal sealed class FakeTimeProvider : TimeProvider
{
    private readonly List<FakeTimer> _timers = new();
    private long _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Volatile.Read(ref _ticks);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var t = new FakeTimer(this, callback, state);
        lock (_timers)
        {
            _timers.Add(t);
        }

        t.Change(dueTime, period);
        return t;
    }

    /// <summary>Whether some timer is set to fire.</summary>
    public bool HasPendingTimer
    {
        get
        {
            lock (_timers)
            {
                return _timers.Exists(t => t.Due is not null);
            }
        }
    }

    /// <summary>Moves the clock forward, firing each timer at its due time, earliest first.</summary>
    public void Advance(TimeSpan by)
    {
        var end = _ticks + by.Ticks;
        while (true)
        {
            FakeTimer? next;
            lock (_timers)
            {
                next = _timers.Where(t => t.Due <= end).MinBy(t => t.Due);
            }

            if (next is null)
            {
                break;
            }

            Volatile.Write(ref _ticks, Math.Max(_ticks, next.Due!.Value));
            next.Due = null;
            next.Fire();
        }

        Volatile.Write(ref _ticks, end);
    }

    private sealed class FakeTimer(FakeTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        public long? Due { get; set; }

        public void Fire() => callback(state);

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            Due = dueTime == Timeout.InfiniteTimeSpan ? null : owner.GetTimestamp() + dueTime.Ticks;
            return true;
        }

        public void Dispose()
        {
            Due = null;
            lock (owner._timers)
            {
                owner._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
