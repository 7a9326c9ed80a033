namespace ExportServer.Block.Core;

/// <summary>Called before a write, zero-write or discard of [offset, offset+length) reaches the driver.</summary>
public delegate ValueTask WriteNotifier(BlockNode node, long offset, long length);

/// <summary>A copy-on-write list of notifiers, cheap to test for emptiness on the hot path.</summary>
public sealed class WriteNotifierList
{
    private WriteNotifier[] _items = [];

    public bool IsEmpty => Volatile.Read(ref _items).Length == 0;

    public void Add(WriteNotifier notifier)
    {
        lock (this)
        {
            _items = [.. _items, notifier];
        }
    }

    public void Remove(WriteNotifier notifier)
    {
        lock (this)
        {
            _items = Array.FindAll(_items, n => n != notifier);
        }
    }

    /// <summary>Runs the notifiers in order; the first failure fails the request. Their I/O is part of the request in flight.</summary>
    public async ValueTask InvokeAsync(BlockNode node, long offset, long length)
    {
        BlockNode.MarkInFlightWork();
        foreach (var n in Volatile.Read(ref _items))
        {
            await n(node, offset, length).ConfigureAwait(false);
        }
    }
}
