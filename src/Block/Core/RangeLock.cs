namespace ExportServer.Block.Core;

/// <summary>
/// Serialises requests on overlapping byte ranges (read-modify-write of unaligned writes, allocating
/// writes of a format driver). Requests on disjoint ranges never wait for each other.
/// </summary>
public sealed class RangeLock
{
    private readonly List<Entry> _held = new();

    /// <summary>Waits until no held range overlaps [offset, offset+length) and takes it.</summary>
    public async ValueTask<Releaser> AcquireAsync(long offset, long length)
    {
        var mine = new Entry(offset, offset + length);
        while (true)
        {
            Task wait;
            lock (_held)
            {
                Entry? blocker = null;
                foreach (var e in _held)
                {
                    if (e.Start < mine.End && mine.Start < e.End)
                    {
                        blocker = e;
                        break;
                    }
                }

                if (blocker is null)
                {
                    _held.Add(mine);
                    return new Releaser(this, mine);
                }

                wait = blocker.Released.Task;
            }

            await wait.ConfigureAwait(false);
        }
    }

    private void Release(Entry e)
    {
        lock (_held)
        {
            _held.Remove(e);
        }

        e.Released.TrySetResult();
    }

    internal sealed class Entry(long start, long end)
    {
        public long Start { get; } = start;
        public long End { get; } = end;
        public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public readonly struct Releaser : IDisposable
    {
        private readonly RangeLock? _owner;
        private readonly Entry? _entry;

        internal Releaser(RangeLock owner, Entry entry)
        {
            _owner = owner;
            _entry = entry;
        }

        public void Dispose()
        {
            if (_owner is not null && _entry is not null)
            {
                _owner.Release(_entry);
            }
        }
    }
}
