using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// blockdev-snapshot-sync (creates and opens the overlay) and blockdev-snapshot (an overlay added
/// with blockdev-add). Prepare leaves the graph as it was apart from the new, unattached overlay;
/// commit puts the overlay on top (backing = old top, old top read-only) and moves exports to it;
/// abort closes the overlay it opened and deletes the file it created.
/// </summary>
public sealed class ExternalSnapshotAction(ITransactionContext ctx, ExternalSnapshotRequest request) : ITransactionAction
{
    private BlockNode? _top;
    private BlockNode? _overlay;
    private bool _openedOverlay;
    private string? _createdFile;

    public async ValueTask PrepareAsync()
    {
        var graph = ctx.Graph;
        if (request.SnapshotFile is not { } file)
        {
            _top = ctx.Lookup(request.Device, request.NodeName);
            var overlayName = request.Overlay!;
            _overlay = graph.TryFind(overlayName) ?? throw BlockException.Invalid($"Cannot find device='' nor node-name='{overlayName}'");
            if (_overlay.BackingChild is not null)
            {
                throw BlockException.Invalid($"The overlay already has a backing image");
            }

            if (!_overlay.SupportsBacking)
            {
                throw BlockException.Invalid($"The overlay does not support backing images");
            }

            CheckTop();
            return;
        }

        _top = ctx.Lookup(request.Device, request.NodeName);
        CheckTop();
        var nodeName = request.SnapshotNodeName;
        var format = request.Format!;
        if (nodeName is not null && graph.TryFind(nodeName) is not null)
        {
            throw BlockException.Invalid($"Duplicate nodes with node-name='{nodeName}'");
        }

        if (!graph.HasDriver(format))
        {
            throw BlockException.Invalid($"Unknown driver '{format}'");
        }

        if (!request.ExistingFile)
        {
            await CreateOverlayAsync(file, format).ConfigureAwait(false);
        }

        var options = new JsonObject
        {
            ["driver"] = format,
            ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = file },
            ["backing"] = null,
        };
        if (nodeName is not null)
        {
            options["node-name"] = nodeName;
        }

        _overlay = await graph.AddAsync(options).ConfigureAwait(false);
        _openedOverlay = true;
        if (!_overlay.SupportsBacking)
        {
            throw BlockException.Invalid($"The overlay does not support backing images");
        }
    }

    private void CheckTop()
    {
        if (ReferenceEquals(_top, _overlay))
        {
            throw BlockException.Invalid("Cannot snapshot a node onto itself");
        }
    }

    /// <summary>
    /// The overlay file, made as QEMU's bdrv_img_create makes it: by the format's creator, with the
    /// top as its backing file and the top's size. A format without backing files cannot be an overlay.
    /// </summary>
    private async ValueTask CreateOverlayAsync(string file, string format)
    {
        var top = _top!;
        var creator = ImageCreation.FileCreator(ctx.Graph, format);
        if (creator is null || !ImageCreation.Accepts(creator, CreateOption.BackingFile))
        {
            throw BlockException.Invalid($"Driver '{format}' does not support image creation");
        }

        try
        {
            await ImageCreation.CreateFileAsync(ctx.Graph, format, file, new JsonObject
            {
                [CreateOption.Size] = top.Length,
                [CreateOption.BackingFile] = top.FileName,
                [CreateOption.BackingFormat] = top.DriverName,
            }).ConfigureAwait(false);
        }
        finally
        {
            // Whatever the creator made goes away on abort, also when formatting it failed.
            if (File.Exists(file))
            {
                _createdFile = file;
            }
        }
    }

    public async ValueTask CommitAsync()
    {
        var top = _top!;
        var overlay = _overlay!;

        // One drained section for the whole change: users' requests to the top wait, then go to the overlay.
        using (await top.BeginDrainedSectionAsync().ConfigureAwait(false))
        {
            await overlay.SetBackingAsync(top).ConfigureAwait(false);
            await ctx.ReplaceUsersAsync(top, overlay).ConfigureAwait(false);
            await ctx.SetReadOnlyAsync(top, true).ConfigureAwait(false);
            ctx.SyncUsers();
        }
    }

    public async ValueTask AbortAsync()
    {
        if (_openedOverlay && _overlay is not null)
        {
            await ctx.Graph.RemoveAsync(_overlay.NodeName).ConfigureAwait(false);
        }

        if (_createdFile is not null)
        {
            File.Delete(_createdFile);
        }
    }
}
