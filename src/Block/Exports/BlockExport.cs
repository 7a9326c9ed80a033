using ExportServer.Block.Core;

namespace ExportServer.Block.Exports;

/// <summary>
/// A node served to clients by one export type (QEMU's BlockExport). The export reaches its node
/// only through <see cref="Root"/>, which follows graph changes (a snapshot, a mirror pivot); the
/// root is taken in the constructor and released in <see cref="DisposeAsync"/>, the one place an
/// export holds its node.
/// </summary>
public abstract class BlockExport : IAsyncDisposable
{
    private readonly BlockNodeUser _user;
    private int _disposed;

    protected BlockExport(BlockExportSettings settings, BlockPermissions shares = BlockPermissions.All)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Id = settings.Id;
        Writable = settings.Writable;
        Root = new BlockRoot(settings.Node) { WriteThrough = settings.WriteThrough };

        // Exports let each other write (a writable NBD and a writable FUSE export of one node at
        // once); a writer keeps the node, whichever it is after a swap, read-write.
        try
        {
            _user = Root.TakeUser(
                $"export '{Id}'", settings.Writable ? BlockPermissions.ConsistentRead | BlockPermissions.Write : BlockPermissions.ConsistentRead, shares, sharesFirst: BlockPermissions.All);
        }
        catch
        {
            // A permission conflict: the root lets go of the node again (a root has no I/O of its own to wait for).
            Root.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    public string Id { get; }

    /// <summary>The export type's QAPI name ('nbd', 'fuse').</summary>
    public abstract string Type { get; }

    /// <summary>What the protocol serves: a forwarder to the exported node.</summary>
    public BlockRoot Root { get; }

    /// <summary>The node the export serves now.</summary>
    public BlockNode Node => Root.Node;

    public bool Writable { get; }

    /// <summary>Clients connected now; a safe block-export-del refuses while there are any.</summary>
    public abstract int ClientCount { get; }

    /// <summary>Set while block-export-del takes the export down (query-block-exports' shutting-down).</summary>
    public bool ShuttingDown { get; internal set; }

    /// <summary>
    /// Stops serving. Safe mode may still refuse when a client came in meanwhile; hard mode
    /// disconnects the clients and returns once they are gone. On failure the export stays as it was.
    /// </summary>
    public abstract ValueTask RequestShutdownAsync(bool hard);

    /// <summary>Releases the node; call after <see cref="RequestShutdownAsync"/> or when creation failed.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            ReleaseResources();
            _user.Dispose();
            await Root.DisposeAsync().ConfigureAwait(false);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>What an export type holds besides the node (the bitmaps an NBD export marks busy), released on dispose.</summary>
    protected virtual void ReleaseResources()
    {
    }

    public override string ToString() => $"{Type}:{Id}";
}
