namespace ExportServer.Nbd.Server;

/// <summary>
/// The data bytes (WRITE payloads, READ replies) that the requests of all of a server's connections
/// may hold at once. Without it the buffers in flight were what set the daemon's peak memory: four
/// connections of 64 requests of 256 KiB each (nbdcopy's defaults) held 64 MiB. A connection's
/// receive loop asks before it reads the next request's payload or starts its read, and waits while
/// the budget is spent. Two rules keep every connection moving:
/// <list type="bullet">
/// <item>A connection with nothing in flight always gets its request, however large, so a request
/// larger than the whole budget still runs, and a client that never reads its replies (holding its
/// share for good) slows the others to one request at a time but never stops them.</item>
/// <item>Waiting connections are served in the order they asked, so a small request cannot keep
/// overtaking a large one.</item>
/// </list>
/// A connection to remote storage may fill the budget further (<see cref="RemoteLimit"/>) than one to
/// a local file: its buffers wait longer, and fewer of them would leave the storage idle.
/// </summary>
internal sealed class NbdByteBudget(long limit)
{
    /// <summary>8 MiB: several requests of qemu-img's 2 MiB or nbdcopy's 256 KiB in flight, a small part of the daemon's memory.</summary>
    public const long DefaultLimit = 8 << 20;

    /// <summary>
    /// The limit for the requests of a connection whose export is remote storage (<see cref="Block.Core.BlockNode.IsRemote"/>):
    /// each of them waits a network round trip or more. 16 MiB is what qemu-storage-daemon holds for
    /// nbdcopy's four connections (16 requests of 256 KiB each), and it stays under librbd's writeback
    /// cache, which stalls writers beyond 24 MiB of dirty data: with 32 MiB, a 1 GiB sequential write
    /// to an rbd image took 1.4-2.1 s against 1.0-1.2 s with 16 MiB, and reads gained nothing.
    /// </summary>
    public const long RemoteLimit = 16 << 20;

    private readonly Lock _lock = new();
    private readonly LinkedList<Account> _waiting = new();
    private long _used;

    /// <summary>Bytes granted now (for tests).</summary>
    public long Used
    {
        get
        {
            lock (_lock)
            {
                return _used;
            }
        }
    }

    /// <summary>Grants <paramref name="bytes"/> to <paramref name="account"/>, at once when they fit, else when enough is released.</summary>
    public ValueTask AcquireAsync(Account account, long bytes)
    {
        lock (_lock)
        {
            if (account.InFlight == 0 || (_waiting.Count == 0 && _used + bytes <= LimitOf(account)))
            {
                Grant(account, bytes);
                return ValueTask.CompletedTask;
            }

            account.Wanted = bytes;
            account.Waiting = true;
            _waiting.AddLast(account.Node);
            return account.Waiter.Wait();
        }
    }

    /// <summary>Gives back bytes an earlier grant to <paramref name="account"/> took, and wakes the waiters that now fit.</summary>
    public void Release(Account account, long bytes)
    {
        List<ReceiveLoopWaiter>? wake = null;
        lock (_lock)
        {
            _used -= bytes;
            account.InFlight -= bytes;
            if (account.Waiting && account.InFlight == 0)
            {
                _waiting.Remove(account.Node);
                (wake ??= []).Add(Grant(account, account.Wanted)!);
            }

            while (_waiting.First is { } head && _used + head.Value.Wanted <= LimitOf(head.Value))
            {
                _waiting.RemoveFirst();
                (wake ??= []).Add(Grant(head.Value, head.Value.Wanted)!);
            }
        }

        if (wake is not null)
        {
            foreach (var w in wake)
            {
                w.Wake();
            }
        }
    }

    /// <summary>The bytes in flight, of all connections, up to which this account's requests are granted.</summary>
    private long LimitOf(Account account) => Math.Max(limit, account.Limit);

    /// <summary>Takes the bytes for the account; returns the waiter it had, if any (to be woken outside the lock).</summary>
    private ReceiveLoopWaiter? Grant(Account account, long bytes)
    {
        _used += bytes;
        account.InFlight += bytes;
        var waiting = account.Waiting;
        account.Waiting = false;
        account.Wanted = 0;
        return waiting ? account.Waiter : null;
    }

    /// <summary>One connection's share: what it holds and, while its receive loop waits, what it asked for.</summary>
    internal sealed class Account
    {
        public Account() => Node = new LinkedListNode<Account>(this);

        internal LinkedListNode<Account> Node { get; }

        internal long InFlight { get; set; }

        internal long Wanted { get; set; }

        /// <summary>A limit above the budget's own for this account's requests (<see cref="RemoteLimit"/>), or 0.</summary>
        internal long Limit { get; set; }

        /// <summary>Whether the connection's receive loop waits for <see cref="Wanted"/> bytes.</summary>
        internal bool Waiting { get; set; }

        /// <summary>How the waiting receive loop resumes.</summary>
        internal ReceiveLoopWaiter Waiter { get; } = new();
    }
}
