using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// blockdev-snapshot-internal-sync: prepare takes the snapshot inside the image (the format's own
/// operation), abort deletes it again; commit has nothing left to do.
/// </summary>
internal sealed class InternalSnapshotAction(CommandContext ctx, JsonObject args) : ITransactionAction
{
    private IInternalSnapshots? _image;
    private InternalSnapshotInfo? _taken;

    public async ValueTask PrepareAsync()
    {
        var device = args["device"]?.GetValue<string>() ?? throw QmpException.Generic("Parameter 'device' is missing");
        var name = args["name"]?.GetValue<string>() ?? throw QmpException.Generic("Parameter 'name' is missing");
        var node = GraphCommands.Lookup(ctx.Daemon, device, null);
        if (name.Length == 0)
        {
            throw QmpException.Generic("Name is empty");
        }

        if (node is not IInternalSnapshots image)
        {
            throw QmpException.Generic($"Block format '{node.DriverName}' used by device '{device}' does not support internal snapshots");
        }

        if (node.IsReadOnly)
        {
            throw QmpException.Generic($"Device '{device}' is read only");
        }

        if (image.ListSnapshots().Any(s => s.Name == name))
        {
            throw QmpException.Generic($"Snapshot with name '{name}' already exists on device '{device}'");
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
