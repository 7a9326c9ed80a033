using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// A disk's CHS geometry as the VHD specification computes it from a sector count (with QEMU's
/// extension to 255 sectors per track beyond 127 GB), and the size QEMU gives a new image.
/// </summary>
internal readonly record struct VpcGeometry(ushort Cylinders, byte Heads, byte SectorsPerTrack)
{
    public long Sectors => (long)Cylinders * Heads * SectorsPerTrack;

    public static VpcGeometry Maximum { get; } = new((ushort)VpcFormat.MaxCylinders, (byte)VpcFormat.MaxHeads, (byte)VpcFormat.MaxSectorsPerTrack);

    /// <summary>The specification's algorithm; the geometry may hold fewer sectors than asked.</summary>
    public static VpcGeometry For(long totalSectors)
    {
        totalSectors = Math.Min(totalSectors, VpcFormat.MaxGeometrySectors);
        byte sectorsPerTrack;
        byte heads;
        uint cylindersTimesHeads;
        if (totalSectors >= 65535L * 16 * 63)
        {
            sectorsPerTrack = 255;
            heads = 16;
            cylindersTimesHeads = (uint)(totalSectors / sectorsPerTrack);
        }
        else
        {
            sectorsPerTrack = 17;
            cylindersTimesHeads = (uint)(totalSectors / sectorsPerTrack);
            heads = (byte)((cylindersTimesHeads + 1023) / 1024);
            if (heads < 4)
            {
                heads = 4;
            }

            if (cylindersTimesHeads >= heads * 1024u || heads > 16)
            {
                sectorsPerTrack = 31;
                heads = 16;
                cylindersTimesHeads = (uint)(totalSectors / sectorsPerTrack);
            }

            if (cylindersTimesHeads >= heads * 1024u)
            {
                sectorsPerTrack = 63;
                heads = 16;
                cylindersTimesHeads = (uint)(totalSectors / sectorsPerTrack);
            }
        }

        return new VpcGeometry((ushort)(cylindersTimesHeads / heads), heads, sectorsPerTrack);
    }

    /// <summary>
    /// The geometry and sector count of a new image of <paramref name="size"/> bytes, as QEMU's
    /// create: the smallest geometry holding the size (sectors are added until one does), or with
    /// <paramref name="forceSize"/> (or a size beyond any geometry) the maximum geometry and the size itself.
    /// </summary>
    public static (VpcGeometry Geometry, long Sectors) ForNewImage(long size, bool forceSize)
    {
        var geometry = default(VpcGeometry);
        if (forceSize)
        {
            geometry = Maximum;
        }
        else
        {
            var wanted = Math.Min(VpcFormat.MaxGeometrySectors, size / VpcFormat.SectorSize);
            for (var i = 0L; wanted > geometry.Sectors; i++)
            {
                geometry = For(wanted + i);
            }
        }

        if (geometry.Sectors != VpcFormat.MaxGeometrySectors)
        {
            return (geometry, geometry.Sectors);
        }

        var sectors = size / VpcFormat.SectorSize;
        if (sectors > VpcFormat.MaxSectors)
        {
            throw new BlockException(Errno.EFBIG, "Disk size is too large, max size is 2040 GiB");
        }

        return (geometry, sectors);
    }
}
