using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Parallels;

/// <summary>
/// Writes new Parallels images as QEMU's parallels_co_create: the extended magic, the header and the
/// BAT padded to whole clusters, the data area starting there; with <see cref="ParallelsCreateOptions.MapAll"/>
/// every cluster is mapped in order over a sparse data area.
/// </summary>
internal static class ParallelsCreator
{
    public static async ValueTask CreateAsync(BlockNode file, ParallelsCreateOptions options)
    {
        var entries = (uint)((options.Size + options.ClusterSize - 1) / options.ClusterSize);
        var metadataBytes = (ParallelsFormat.EntryOffset(entries) + options.ClusterSize - 1) / options.ClusterSize * options.ClusterSize;
        var tracks = (uint)(options.ClusterSize / ParallelsFormat.SectorSize);
        var header = new ParallelsHeader
        {
            Cylinders = (uint)(options.Size / ParallelsFormat.SectorSize / ParallelsFormat.Heads / ParallelsFormat.SectorsPerCylinder),
            Tracks = tracks,
            BatEntries = entries,
            Sectors = (ulong)(options.Size / ParallelsFormat.SectorSize),
            DataOffset = (uint)(metadataBytes / ParallelsFormat.SectorSize),
        };
        var firstCluster = (uint)(metadataBytes / options.ClusterSize);
        var head = new byte[options.MapAll ? ParallelsFormat.EntryOffset(entries) : ParallelsFormat.SectorSize];
        header.Write(head);
        if (options.MapAll)
        {
            for (var i = 0u; i < entries; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan((int)ParallelsFormat.EntryOffset(i)), firstCluster + i);
            }
        }

        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        var end = metadataBytes + (options.MapAll ? entries * options.ClusterSize : 0);
        await file.TruncateAsync(end).ConfigureAwait(false);
        await file.WriteAsync(0, head).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
    }
}
