using ExportServer.Block.Core;

namespace ExportServer.Fuse;

/// <summary>
/// The options of <c>--export type=fuse</c> / block-export-add: the export id, the node, the
/// mount point (an existing regular file), and QEMU's writable / growable / allow-other.
/// </summary>
public sealed record FuseExportOptions(string Id, BlockNode Node, string MountPoint)
{
    public bool Writable { get; init; }

    /// <summary>Writes past the end grow the node instead of being cut short.</summary>
    public bool Growable { get; init; }

    public FuseAllowOther AllowOther { get; init; } = FuseAllowOther.Auto;

    /// <summary>
    /// Threads that receive requests from the kernel. They only decode and hand requests to async
    /// methods, so two keep up with many concurrent clients (more measured slower on two cores).
    /// </summary>
    public int ReceiveThreads { get; init; } = 2;
}
