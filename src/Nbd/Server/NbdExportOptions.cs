using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Exports;

namespace ExportServer.Nbd.Server;

/// <summary>One export of the NBD server: a node under a name.</summary>
public sealed class NbdExportOptions
{
    /// <summary>The name clients ask for; "" is a valid name and only then serves as the default export.</summary>
    public required string Name { get; init; }

    public string? Description { get; init; }

    public required BlockNode Node { get; init; }

    public bool Writable { get; init; }

    /// <summary>Whether "qemu:allocation-depth" is offered (the export's allocation-depth option; off by default as in QEMU).</summary>
    public bool AllocationDepth { get; init; }

    /// <summary>Bitmaps offered as "qemu:dirty-bitmap:NAME".</summary>
    public IReadOnlyList<BlockDirtyBitmap> Bitmaps { get; init; } = [];

    /// <summary>When set (an iothread), request processing for this export runs on it.</summary>
    public TaskScheduler? Scheduler { get; init; }

    /// <summary>
    /// How a connection to this export polls for its next request: the main loop's polling, or none on
    /// an iothread, whose requests run on that thread while the receive loop waits (a poll there takes
    /// the CPU the requests need: random reads at queue depth 32 fell to half).
    /// </summary>
    public RequestPolling Polling { get; init; } = RequestPolling.Off;
}
