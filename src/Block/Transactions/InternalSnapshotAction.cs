using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// blockdev-snapshot-internal-sync of <c>device</c> as <c>name</c>: prepare takes the snapshot inside
/// the image (the format's own operation), abort deletes it again; commit has nothing left to do.
/// </summary>
public sealed class InternalSnapshotAction(ITransactionContext ctx, string device, string name) : ITransactionAction
{
    private IInternalSnapshots? _image;
    private InternalSnapshotInfo? _taken;

    public async ValueTask PrepareAsync()
    {
        var node = ctx.Lookup(device, null);
        if (name.Length == 0)
        {
            throw BlockException.Invalid("Name is empty");
        }

        if (node is not IInternalSnapshots image)
        {
            throw BlockException.Invalid($"Block format '{node.DriverName}' used by device '{device}' does not support internal snapshots");
        }

        if (node.IsReadOnly)
        {
            throw BlockException.Invalid($"Device '{device}' is read only");
        }

        if (image.ListSnapshots().Any(s => s.Name == name))
        {
            throw BlockException.Invalid($"Snapshot with name '{name}' already exists on device '{device}'");
        }

        _image = image;
        _taken = await image.CreateSnapshotAsync(name).ConfigureAwait(false);
    }

    public ValueTask CommitAsync() => ValueTask.CompletedTask;

    public async ValueTask AbortAsync()
    {
        if (_image is not null && _taken is not null)
        {
            await _image.DeleteSnapshotAsync(_taken.Id, _taken.Name).ConfigureAwait(false);
        }
    }
}
