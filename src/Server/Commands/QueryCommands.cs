using System.Text.Json;
using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>qapi/block-core.json queries: named nodes, devices, statistics.</summary>
internal static class QueryCommands
{
    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("query-named-block-nodes", [QmpArg.Bool("flat")], call =>
        {
            var flat = call.GetBool("flat", false);
            var list = ctx.Daemon.Graph.Nodes.Select(n => DeviceInfo(n, flat, ctx.Thresholds)).ToList();
            return Return(JsonSerializer.SerializeToNode(list, QmpJsonContext.Default.ListBlockDeviceInfo));
        }, "[BlockDeviceInfo]"));

        // qemu-storage-daemon has no named devices (exports' backends are anonymous): the list is empty.
        d.Add(new QmpCommand("query-block", [], _ => Return(new System.Text.Json.Nodes.JsonArray()), "[BlockInfo]"));
        d.Add(new QmpCommand("query-blockstats", [QmpArg.Bool("query-nodes")], call =>
        {
            var list = call.GetBool("query-nodes", false)
                ? ctx.Daemon.Graph.Nodes.Where(n => !n.NodeName.StartsWith('#')).Select(n => Stats(n, named: true)).ToList()
                : [];
            return Return(JsonSerializer.SerializeToNode(list, QmpJsonContext.Default.ListBlockStatsInfo));
        }, "[BlockStats]"));
    }

    public static BlockDeviceInfo DeviceInfo(BlockNode node, bool flat, WriteThresholds thresholds) => new()
    {
        File = node.FileName,
        NodeName = node.NodeName,
        ReadOnly = node.IsReadOnly,
        Driver = node.DriverName,
        Encrypted = IsEncrypted(node),
        BackingFile = node.BackingChild?.Node.FileName,
        BackingFileDepth = flat ? 0 : ShownDepth(node),
        Image = Image(node, flat),
        Cache = new BlockdevCacheInfo(true, node.Cache.Direct, node.Cache.NoFlush),
        DetectZeroes = node.DetectZeroes switch { DetectZeroes.On => "on", DetectZeroes.Unmap => "unmap", _ => "off" },
        WriteThreshold = thresholds.Get(node),
        DirtyBitmaps = node.DirtyBitmaps.Count + node.AnonymousBitmaps.Count == 0
            ? null
            : [.. node.AnonymousBitmaps.Select(AnonymousInfo), .. node.DirtyBitmaps.Select(DirtyInfo)],
    };

    /// <summary>A job's or filter's own bitmap, as QEMU shows one without a name: not recording, its count what it marks.</summary>
    private static BlockDirtyInfo AnonymousInfo(DirtyBitmap b) => new()
    {
        Count = b.DirtyGranules * b.Granularity,
        Granularity = b.Granularity,
        Recording = false,
        Busy = false,
        Persistent = false,
    };

    private static BlockDirtyInfo DirtyInfo(BlockDirtyBitmap b) => new()
    {
        Name = b.Name,
        Count = b.Count,
        Granularity = b.Granularity,
        Recording = b.Enabled,
        Busy = b.Busy,
        Persistent = b.Persistent,
        Inconsistent = b.Inconsistent ? true : null,
    };

    /// <summary>
    /// The node shown below <paramref name="node"/> in backing-image and counted in backing_file_depth:
    /// the backing child, or a filter's filtered node (QEMU's bdrv_filter_or_cow_bs), so a filter on a
    /// backing link (commit_top) or above a node (mirror_top, throttle) is one level of its own.
    /// </summary>
    private static BlockNode? ShownBelow(BlockNode node) =>
        node.BackingChild?.Node ?? (node is ForwardingNode filter ? filter.Target : null);

    private static int ShownDepth(BlockNode node)
    {
        var depth = 0;
        for (var n = ShownBelow(node); n is not null; n = ShownBelow(n))
        {
            depth++;
        }

        return depth;
    }

    /// <summary>
    /// QEMU's bdrv_query_image_info: this layer (what its driver tells through <see cref="ImageInfoQuery"/>),
    /// and unless flat, the layers below nested (see <see cref="ShownBelow"/>). The backing file is the one
    /// the image names, resolved against the image's directory; a node that names none shows the attached one.
    /// </summary>
    /// <summary>QEMU's bs->encrypted: set by the drivers that decrypt (luks, qcow2 with encryption), for that node only.</summary>
    private static bool IsEncrypted(BlockNode node) => node is IImageInfoSource { Encrypted: true };

    public static ImageInfo Image(BlockNode node, bool flat)
    {
        var below = ShownBelow(node);
        var driverInfo = ImageInfoQuery.DriverInfo(node);
        var specific = ImageInfoQuery.SpecificInfo(node);
        var named = ImageInfoQuery.BackingFile(node);
        var attached = node.BackingChild?.Node;
        var backing = named ?? (attached is null ? null : new BackingFileName(attached.FileName, attached.DriverName));
        var fullBacking = named is not null ? BackingFileName.Resolve(node.FileName, named.Name) : backing?.Name;
        return new ImageInfo
        {
            Filename = node.FileName,
            Format = node.DriverName,
            VirtualSize = node.Length,
            ActualSize = ImageInfoQuery.AllocatedSize(node),
            ClusterSize = driverInfo is { ClusterSize: > 0 } ? driverInfo.ClusterSize : null,
            DirtyFlag = driverInfo?.IsDirty,
            Encrypted = IsEncrypted(node) ? true : null,
            FormatSpecific = specific is null ? null : new ImageInfoSpecific(specific.Type, specific.Data),
            BackingFilename = backing?.Name,
            FullBackingFilename = fullBacking,
            BackingFilenameFormat = backing?.Format,
            Snapshots = node is IInternalSnapshots s && s.ListSnapshots().Count > 0 ? s.ListSnapshots().Select(Snapshot).ToList() : null,
            BackingImage = below is not null && !flat ? Image(below, false) : null,
        };
    }

    public static SnapshotInfo Snapshot(InternalSnapshotInfo s) => new(
        s.Id, s.Name, s.VmStateSize, s.DateSeconds, s.DateNanoseconds, s.VmClockNanoseconds / 1_000_000_000, s.VmClockNanoseconds % 1_000_000_000);

    private static BlockStatsInfo Stats(BlockNode node, bool named) => new()
    {
        NodeName = named || !node.NodeName.StartsWith('#') ? node.NodeName : null,
        Stats = new BlockDeviceStats
        {
            RdBytes = node.Stats.ReadBytes,
            WrBytes = node.Stats.WriteBytes + node.Stats.ZeroBytes,
            UnmapBytes = node.Stats.DiscardBytes,
            RdOperations = node.Stats.ReadOps,
            WrOperations = node.Stats.WriteOps + node.Stats.ZeroOps,
            FlushOperations = node.Stats.FlushOps,
            UnmapOperations = node.Stats.DiscardOps,
            FailedWrOperations = node.Stats.FailedOps,
        },
        Parent = node.FileChild is { } f ? Stats(f.Node, named: false) : null,
        Backing = node.BackingChild is { } b ? Stats(b.Node, named: false) : null,
    };
}
