namespace ExportServer.Block.Core;

/// <summary>Graph changes at run time: reopening read-only/read-write and replacing the backing child.</summary>
public abstract partial class BlockNode
{
    public bool SupportsBacking => Capabilities.Backing;

    /// <summary>
    /// Switches the node between read-only and read-write in a drained section; going read-only
    /// flushes first. The driver's <see cref="ReopenCoreAsync"/> may refuse (the node is then unchanged).
    /// </summary>
    public async ValueTask SetReadOnlyAsync(bool readOnly)
    {
        if (readOnly == IsReadOnly)
        {
            return;
        }

        using (await BeginDrainedSectionAsync().ConfigureAwait(false))
        {
            if (readOnly)
            {
                // The node is held: its own flush goes straight to the driver.
                await FlushCoreAsync().ConfigureAwait(false);
            }

            await ReopenCoreAsync(readOnly).ConfigureAwait(false);
            IsReadOnly = readOnly;
        }
    }

    /// <summary>
    /// Reopens the driver's resources for the new mode, inside a drained section (no request of a
    /// user is in flight); the default has none to reopen.
    /// </summary>
    protected virtual ValueTask ReopenCoreAsync(bool readOnly) => ValueTask.CompletedTask;

    /// <summary>
    /// Makes <paramref name="backing"/> the backing child (null removes it) in a drained section. The image
    /// header is not changed: that is <see cref="IBackingFileWriter"/>'s job.
    /// </summary>
    public async ValueTask SetBackingAsync(BlockNode? backing)
    {
        if (!SupportsBacking)
        {
            throw BlockException.NotSupported($"Driver '{DriverName}' of node '{NodeName}' does not support backing files");
        }

        for (var n = SkipFilters(backing); n is not null; n = n.BackingLayer)
        {
            if (ReferenceEquals(n, this))
            {
                throw BlockException.Invalid($"Making '{backing!.NodeName}' a backing child of '{NodeName}' would create a cycle");
            }
        }

        using var section = await BeginDrainedSectionAsync().ConfigureAwait(false);
        var current = BackingChild;
        if (current is not null && backing is not null)
        {
            ReplaceChild(current, backing);
        }
        else if (current is not null)
        {
            DetachChild(current);
        }
        else if (backing is not null)
        {
            AttachChild("backing", ChildRole.Backing, backing);
        }
    }
}
