namespace ExportServer.Block.Core;

/// <summary>
/// The last run of data a protocol driver's SEEK_DATA/SEEK_HOLE lookup found, as QEMU keeps one per
/// protocol node (its block-status cache): a query inside the run is answered without asking the file
/// or the server again. Writes only turn holes into data, so a run stays data until the driver punches,
/// zeroes or truncates; it calls <see cref="Forget"/> before such a change (so no lookup running across
/// it stores what it saw) and after it (so no lookup that ran during it survives). A lookup takes
/// <see cref="Generation"/> before it starts and passes it to <see cref="Remember"/>, which keeps the
/// run only if nothing was forgotten in between.
/// </summary>
internal sealed class DataRunCache
{
    private readonly Lock _lock = new();
    private DataRun? _run;
    private long _generation;

    /// <summary>Taken by a lookup before it starts.</summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>The end of the known run when <paramref name="offset"/> lies inside it, else -1.</summary>
    public long EndOfRunAt(long offset)
    {
        var run = Volatile.Read(ref _run);
        return run is not null && offset >= run.Start && offset < run.End ? run.End : -1;
    }

    /// <summary>Keeps data [<paramref name="start"/>, <paramref name="end"/>) unless a forget came since <paramref name="generation"/> was taken.</summary>
    public void Remember(long start, long end, long generation)
    {
        lock (_lock)
        {
            if (_generation == generation)
            {
                Volatile.Write(ref _run, new DataRun(start, end));
            }
        }
    }

    /// <summary>Drops the known run and makes every lookup in progress drop what it finds.</summary>
    public void Forget()
    {
        lock (_lock)
        {
            _generation++;
            Volatile.Write(ref _run, null);
        }
    }

    private sealed record DataRun(long Start, long End);
}
