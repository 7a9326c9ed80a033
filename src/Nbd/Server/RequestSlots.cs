namespace ExportServer.Nbd.Server;

/// <summary>
/// A connection's free request slots: the receive loop takes one before each request and waits while
/// none is free; a request's end gives its slot back, or hands it straight to the waiting loop, which
/// resumes as <see cref="ReceiveLoopWaiter"/> says.
/// </summary>
internal sealed class RequestSlots(int count)
{
    private readonly Lock _lock = new();
    private readonly ReceiveLoopWaiter _waiter = new();
    private int _free = count;
    private bool _waiting;

    /// <summary>Slots free now.</summary>
    public int Free => Volatile.Read(ref _free);

    /// <summary>Takes a slot if one is free.</summary>
    public bool TryTake()
    {
        lock (_lock)
        {
            if (_free == 0)
            {
                return false;
            }

            _free--;
            return true;
        }
    }

    /// <summary>Takes a slot, waiting for one while none is free; one caller at a time.</summary>
    public ValueTask TakeAsync()
    {
        lock (_lock)
        {
            if (_free > 0)
            {
                _free--;
                return ValueTask.CompletedTask;
            }

            _waiting = true;
        }

        return _waiter.Wait();
    }

    /// <summary>Gives a slot back.</summary>
    public void Give()
    {
        lock (_lock)
        {
            if (!_waiting)
            {
                _free++;
                return;
            }

            _waiting = false;
        }

        _waiter.Wake();
    }
}
