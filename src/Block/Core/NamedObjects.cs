namespace ExportServer.Block.Core;

/// <summary>
/// User-created objects that drivers refer to by id (QEMU's /objects container, for the kinds the
/// block layer needs, such as throttle groups). Ids are unique across every kind of object.
/// </summary>
public sealed class NamedObjects
{
    private readonly Dictionary<string, object> _objects = new(StringComparer.Ordinal);

    public bool Contains(string id)
    {
        lock (_objects)
        {
            return _objects.ContainsKey(id);
        }
    }

    /// <summary>Adds an object; refuses an id that is taken, with QEMU's wording.</summary>
    public void Add(string id, object value)
    {
        lock (_objects)
        {
            if (!_objects.TryAdd(id, value))
            {
                throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
            }
        }
    }

    /// <summary>The object with this id if it is of type <typeparamref name="T"/>, else null.</summary>
    public T? TryGet<T>(string id)
        where T : class
    {
        lock (_objects)
        {
            return _objects.TryGetValue(id, out var v) ? v as T : null;
        }
    }

    public bool Remove(string id)
    {
        lock (_objects)
        {
            return _objects.Remove(id);
        }
    }
}
