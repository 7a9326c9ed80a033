using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Exports;

namespace ExportServer.Nbd.Server;

/// <summary>An export of the NBD server, as the export table sees it.</summary>
internal sealed class NbdBlockExport : BlockExport
{
    private readonly NbdServer _server;

    /// <summary>An NBD export has a fixed size: like QEMU's, it lets nobody else resize its node.</summary>
    public NbdBlockExport(BlockExportSettings settings, NbdServer server, string name, IReadOnlyList<BlockDirtyBitmap> bitmaps)
        : base(settings, BlockPermissions.All & ~BlockPermissions.Resize)
    {
        _server = server;
        Name = name;
        Bitmaps = bitmaps;
        foreach (var b in bitmaps)
        {
            b.Busy = true;
        }
    }

    /// <summary>The bitmaps offered as "qemu:dirty-bitmap:NAME", busy while the export lives.</summary>
    public IReadOnlyList<BlockDirtyBitmap> Bitmaps { get; }

    /// <summary>The name clients ask for.</summary>
    public string Name { get; }

    public override string Type => NbdExportType.TypeName;

    public override int ClientCount => _server.ClientCount(Name);

    public override ValueTask RequestShutdownAsync(bool hard) => _server.RemoveExportAsync(Name, hard);

    protected override void ReleaseResources()
    {
        foreach (var b in Bitmaps)
        {
            b.Busy = false;
        }
    }
}
