namespace ExportServer.Block.Core;

/// <summary>
/// Runs of data a protocol driver's SEEK_DATA/SEEK_HOLE lookups found, as QEMU keeps the last one per
/// protocol node (its block-status cache); this one keeps up to <see cref="Capacity"/> runs, so a second
/// walk over a sparse file (the next map of it) needs one seek a data run instead of two. A query inside a
/// run is answered without asking the file or the server again. Writes only turn holes into data, so a
/// run stays data until the driver punches, zeroes or truncates; it calls <see cref="Forget"/> before such
/// a change (so no lookup running across it stores what it saw) and after it (so no lookup that ran
/// during it survives). A lookup takes <see cref="Generation"/> before it starts and passes it to
/// <see cref="Remember"/>, which keeps the run only if nothing was forgotten in between.
/// </summary>
internal sealed class DataRunCache
{
    /// <summary>Most runs kept; when full, the cache starts over (32 KiB at most).</summary>
    public const int Capacity = 2048;

    private readonly Lock _lock = new();

    // Disjoint, non-adjacent runs [_starts[i], _ends[i]) sorted by start; grown on demand.
    private long[] _starts = new long[4];
    private long[] _ends = new long[4];
    private int _count;
    private long _generation;

    /// <summary>Taken by a lookup before it starts.</summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>How many runs are kept (for tests).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>The end of the known run when <paramref name="offset"/> lies inside one, else -1.</summary>
    public long EndOfRunAt(long offset)
    {
        lock (_lock)
        {
            var i = LastStartingAtOrBefore(offset);
            return i >= 0 && offset < _ends[i] ? _ends[i] : -1;
        }
    }

    /// <summary>Keeps data [<paramref name="start"/>, <paramref name="end"/>) unless a forget came since <paramref name="generation"/> was taken.</summary>
    public void Remember(long start, long end, long generation)
    {
        if (end <= start)
        {
            return;
        }

        lock (_lock)
        {
            if (_generation != generation)
            {
                return;
            }

            // Runs that overlap or touch the new one are data as well: they become one run.
            var first = LastStartingAtOrBefore(start);
            if (first < 0 || _ends[first] < start)
            {
                first++;
            }

            var last = first;
            while (last < _count && _starts[last] <= end)
            {
                start = Math.Min(start, _starts[last]);
                end = Math.Max(end, _ends[last]);
                last++;
            }

            if (first == last && _count == Capacity)
            {
                _count = 0;
                first = last = 0;
            }

            Replace(first, last, start, end);
        }
    }

    /// <summary>Drops the known runs and makes every lookup in progress drop what it finds.</summary>
    public void Forget()
    {
        lock (_lock)
        {
            _generation++;
            _count = 0;
        }
    }

    /// <summary>Index of the last run starting at or before <paramref name="offset"/>, or -1.</summary>
    private int LastStartingAtOrBefore(long offset)
    {
        int lo = 0, hi = _count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_starts[mid] <= offset)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return hi;
    }

    /// <summary>Replaces runs [first, last) by the single run [start, end).</summary>
    private void Replace(int first, int last, long start, long end)
    {
        var count = _count - (last - first) + 1;
        if (count > _starts.Length)
        {
            var size = Math.Min(Capacity, _starts.Length * 2);
            Array.Resize(ref _starts, size);
            Array.Resize(ref _ends, size);
        }

        var tail = _count - last;
        Array.Copy(_starts, last, _starts, first + 1, tail);
        Array.Copy(_ends, last, _ends, first + 1, tail);
        _starts[first] = start;
        _ends[first] = end;
        _count = count;
    }
}
