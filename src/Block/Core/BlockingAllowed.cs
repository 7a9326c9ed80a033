namespace ExportServer.Block.Core;

/// <summary>
/// A hint, for the current thread only, that the caller has nothing else to do until its request is
/// done. A driver may then make a call that waits for the device (a read the page cache cannot serve,
/// O_DIRECT I/O, a write with RWF_DSYNC, fdatasync) right here instead of handing it to another thread
/// and being woken when it is done: two thread switches less for each such call. The NBD server gives
/// the hint to the only request in flight of the server's only connection, the client that waits for
/// each reply before it sends the next request (queue depth 1). The caller's gate is asked only when a
/// driver is about to wait, so requests that never wait cost nothing. Code that awaits in between loses
/// the hint, as its continuation runs on another thread; it then only misses the shortcut.
/// </summary>
public static class BlockingAllowed
{
    [ThreadStatic]
    private static IGate? t_gate;

    /// <summary>Whether the current thread may wait for the device now.</summary>
    public static bool Here => t_gate is { } gate && gate.MayBlock;

    /// <summary>Gives the hint, as far as <paramref name="gate"/> allows, until the returned scope is disposed, on the same thread.</summary>
    public static Scope Enter(IGate gate)
    {
        var scope = new Scope(t_gate);
        t_gate = gate;
        return scope;
    }

    /// <summary>Decides, when a driver asks, whether the thread that holds the hint may wait.</summary>
    public interface IGate
    {
        bool MayBlock { get; }
    }

    /// <summary>Restores what the thread had before <see cref="Enter"/>.</summary>
    public readonly struct Scope(IGate? previous) : IDisposable
    {
        public void Dispose() => t_gate = previous;
    }
}
