namespace ExportServer.Block.Core;

/// <summary>
/// Runs of holes a protocol driver's SEEK_DATA lookups found, so that walking a sparse file again
/// (the next map of it) needs no seek at all: together with the <see cref="DataRunCache"/> every run is
/// answered from memory. A write turns a hole into data, so every write, zeroing, discard and truncate
/// calls <see cref="Wrote"/> once it has landed, and the kept runs count only while no such call came
/// since they were found: a write costs one atomic increment and no lock. A lookup takes
/// <see cref="Writes"/> before it asks the file and passes it to <see cref="Remember"/>. Only a node
/// whose image locks keep other writers out may keep holes: a write by another process would go unseen.
/// </summary>
internal sealed class HoleRunCache
{
    private readonly Lock _lock = new();
    private readonly DataRunCache _runs = new();
    private long _writes;

    /// <summary>The value of <see cref="_writes"/> when the kept runs were found.</summary>
    private long _stamp = -1;

    /// <summary>Taken by a lookup before it starts.</summary>
    public long Writes => Volatile.Read(ref _writes);

    /// <summary>How many runs are kept, valid or not (for tests).</summary>
    public int Count => _runs.Count;

    /// <summary>Called after every change of the file's contents or length.</summary>
    public void Wrote() => Interlocked.Increment(ref _writes);

    /// <summary>The end of the known hole at <paramref name="offset"/>, or -1 when none is known since the last write.</summary>
    public long EndOfHoleAt(long offset)
    {
        var writes = Volatile.Read(ref _writes);
        return Volatile.Read(ref _stamp) == writes ? _runs.EndOfRunAt(offset) : -1;
    }

    /// <summary>Keeps the hole [<paramref name="start"/>, <paramref name="end"/>) unless a write came since <paramref name="writes"/> was taken.</summary>
    public void Remember(long start, long end, long writes)
    {
        lock (_lock)
        {
            if (Volatile.Read(ref _writes) != writes)
            {
                return;
            }

            if (_stamp != writes)
            {
                // Runs found before a write: gone before the new stamp makes them count.
                _runs.Forget();
                Volatile.Write(ref _stamp, writes);
            }

            _runs.Remember(start, end, _runs.Generation);
        }
    }
}
