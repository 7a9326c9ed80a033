using ExportServer.Block.Exports;
using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse;

/// <summary>A FUSE mount as the export table sees it.</summary>
internal sealed class FuseBlockExport : BlockExport
{
    private FuseExport? _mount;

    public FuseBlockExport(BlockExportSettings settings)
        : base(settings)
    {
    }

    public override string Type => FuseExportType.TypeName;

    /// <summary>A mount has no clients to count: processes use the file through the kernel, as in QEMU's FUSE export.</summary>
    public override int ClientCount => 0;

    public void Mount(FuseExportOptions options, ILogger? logger) => _mount = FuseExport.Mount(options, logger);

    /// <summary>Unmounts; requests in flight finish first.</summary>
    public override ValueTask RequestShutdownAsync(bool hard) => _mount?.DisposeAsync() ?? default;
}
