using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>A live export: its options, what it tells clients, and the connections bound to it.</summary>
internal sealed class NbdExport
{
    private readonly HashSet<NbdConnection> _connections = new();
    private bool _removed;

    public NbdExport(NbdExportOptions options)
    {
        Options = options;
        List<NbdMetaContext> contexts = [new BaseAllocationContext()];
        if (options.AllocationDepth)
        {
            contexts.Add(new AllocationDepthContext());
        }

        contexts.AddRange(options.Bitmaps.Select(b => new DirtyBitmapContext(b)));
        MetaContexts = contexts;
    }

    public NbdExportOptions Options { get; }

    public string Name => Options.Name;

    public bool Writable => Options.Writable;

    /// <summary>Contexts offered to BLOCK_STATUS; a context's id is its index here.</summary>
    public IReadOnlyList<NbdMetaContext> MetaContexts { get; }

    /// <summary>
    /// Transmission flags, true for this export. Multi-conn is safe for writable exports too because
    /// every connection reaches the same node and FLUSH flushes the node.
    /// </summary>
    public ushort TransmissionFlags(bool structured)
    {
        var flags = (ushort)(NbdConstants.FlagHasFlags | NbdConstants.FlagSendFlush | NbdConstants.FlagSendFua
            | NbdConstants.FlagCanMultiConn | NbdConstants.FlagSendCache);
        if (structured)
        {
            flags |= NbdConstants.FlagSendDf;
        }

        if (!Writable)
        {
            return (ushort)(flags | NbdConstants.FlagReadOnly);
        }

        flags |= NbdConstants.FlagSendTrim | NbdConstants.FlagSendWriteZeroes;
        if (Options.Node.CanFastZero)
        {
            flags |= NbdConstants.FlagSendFastZero;
        }

        return flags;
    }

    /// <summary>Binds a connection to the export; fails once the export is being removed.</summary>
    public bool TryAttach(NbdConnection connection)
    {
        lock (_connections)
        {
            return !_removed && _connections.Add(connection);
        }
    }

    public int ConnectionCount
    {
        get
        {
            lock (_connections)
            {
                return _connections.Count;
            }
        }
    }

    public void Detach(NbdConnection connection)
    {
        lock (_connections)
        {
            _connections.Remove(connection);
        }
    }

    /// <summary>Marks the export removed and returns its connections; without <paramref name="force"/>, only when it has none.</summary>
    public NbdConnection[]? TryRemove(bool force)
    {
        lock (_connections)
        {
            if (!force && _connections.Count > 0)
            {
                return null;
            }

            _removed = true;
            return [.. _connections];
        }
    }
}
