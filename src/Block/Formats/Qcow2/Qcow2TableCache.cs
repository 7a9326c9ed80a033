using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// An LRU cache of cluster-sized metadata tables read from the image file. Clean tables are evicted
/// when the cache is over capacity; dirty tables stay until <see cref="WriteBackAsync"/> (called by
/// the node, in dependency order: refcount blocks before the L2 tables that need them), so the cache
/// may exceed its capacity by the number of dirty tables. Concurrent misses of one table share one read.
/// </summary>
internal sealed class Qcow2TableCache
{
    private readonly BlockNode _file;
    private readonly int _tableSize;
    private readonly int _capacity;
    private readonly Dictionary<long, LinkedListNode<Qcow2Table>> _map = new();
    private readonly LinkedList<Qcow2Table> _lru = new();
    private readonly object _gate = new();
    private int _dirty;

    public Qcow2TableCache(BlockNode file, int tableSize, int capacity)
    {
        _file = file;
        _tableSize = tableSize;
        _capacity = Math.Max(capacity, 2);
    }

    public int Capacity => _capacity;

    public int DirtyCount => Volatile.Read(ref _dirty);

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _map.Count;
            }
        }
    }

    /// <summary>Returns the table at <paramref name="offset"/>, reading it on a miss.</summary>
    public async ValueTask<Qcow2Table> GetAsync(long offset)
    {
        Qcow2Table table;
        TaskCompletionSource? load = null;
        lock (_gate)
        {
            if (_map.TryGetValue(offset, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                table = node.Value;
                table.Used = true;
            }
            else
            {
                table = new Qcow2Table(offset, new byte[_tableSize]);
                load = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                table.Loaded = load.Task;
                _map[offset] = _lru.AddFirst(table);
                EvictLocked();
            }
        }

        if (load is null)
        {
            if (!table.Loaded.IsCompletedSuccessfully)
            {
                await table.Loaded.ConfigureAwait(false);
            }

            return table;
        }

        try
        {
            // A table past the end of the file reads as zeroes (an empty table), as QEMU's block
            // layer pads a read beyond EOF, rather than failing the guest's request with EINVAL.
            var n = (int)Math.Clamp(_file.Length - offset, 0, table.Data.Length);
            if (n > 0)
            {
                await _file.ReadAsync(offset, table.Data.AsMemory(0, n)).ConfigureAwait(false);
            }

            load.SetResult();
            return table;
        }
        catch (Exception e)
        {
            lock (_gate)
            {
                if (_map.TryGetValue(offset, out var node) && node.Value == table)
                {
                    _map.Remove(offset);
                    _lru.Remove(node);
                }
            }

            load.SetException(e);
            throw;
        }
    }

    /// <summary>Enters a new table (a freshly allocated cluster) whose contents the caller fills; it starts dirty.</summary>
    public Qcow2Table CreateNew(long offset, ReadOnlySpan<byte> contents = default)
    {
        var table = new Qcow2Table(offset, new byte[_tableSize]);
        contents.CopyTo(table.Data);
        lock (_gate)
        {
            if (_map.Remove(offset, out var old))
            {
                _lru.Remove(old);
                if (old.Value.Dirty)
                {
                    _dirty--;
                }
            }

            _map[offset] = _lru.AddFirst(table);
            table.Dirty = true;
            _dirty++;
            EvictLocked();
        }

        return table;
    }

    public void MarkDirty(Qcow2Table table)
    {
        lock (_gate)
        {
            if (!table.Dirty)
            {
                table.Dirty = true;
                _dirty++;
            }
        }
    }

    /// <summary>Forgets a table whose cluster was freed; its pending changes are dropped.</summary>
    public void Remove(long offset)
    {
        lock (_gate)
        {
            if (_map.Remove(offset, out var node))
            {
                _lru.Remove(node);
                if (node.Value.Dirty)
                {
                    _dirty--;
                    node.Value.Dirty = false;
                }
            }
        }
    }

    /// <summary>Writes every dirty table to the file (no flush). The caller holds the metadata lock.</summary>
    public async ValueTask WriteBackAsync()
    {
        List<Qcow2Table> dirty;
        lock (_gate)
        {
            dirty = _lru.Where(t => t.Dirty).OrderBy(t => t.Offset).ToList();
        }

        foreach (var t in dirty)
        {
            await _file.WriteAsync(t.Offset, t.Data).ConfigureAwait(false);
            lock (_gate)
            {
                if (t.Dirty)
                {
                    t.Dirty = false;
                    _dirty--;
                }
            }
        }

        lock (_gate)
        {
            EvictLocked();
        }
    }

    /// <summary>Writes one dirty table now (a new table that must reach the file before a pointer to it).</summary>
    public async ValueTask WriteOneAsync(Qcow2Table t)
    {
        await _file.WriteAsync(t.Offset, t.Data).ConfigureAwait(false);
        lock (_gate)
        {
            if (t.Dirty)
            {
                t.Dirty = false;
                _dirty--;
            }
        }
    }

    /// <summary>cache-clean-interval: drops clean tables that were not used since the previous call.</summary>
    public void DropUnused()
    {
        lock (_gate)
        {
            var node = _lru.Last;
            while (node is not null)
            {
                var prev = node.Previous;
                var t = node.Value;
                if (!t.Used && !t.Dirty && t.Loaded.IsCompleted)
                {
                    _map.Remove(t.Offset);
                    _lru.Remove(node);
                }
                else
                {
                    t.Used = false;
                }

                node = prev;
            }
        }
    }

    private void EvictLocked()
    {
        var node = _lru.Last;
        while (_map.Count > _capacity && node is not null)
        {
            var prev = node.Previous;
            var t = node.Value;
            if (!t.Dirty && t.Loaded.IsCompleted)
            {
                _map.Remove(t.Offset);
                _lru.Remove(node);
            }

            node = prev;
        }
    }
}
