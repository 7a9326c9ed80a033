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

    /// <summary>Threads that receive requests from the kernel; requests themselves run asynchronously.</summary>
    public int ReceiveThreads { get; init; } = Math.Clamp(Environment.ProcessorCount, 2, 4);
}
