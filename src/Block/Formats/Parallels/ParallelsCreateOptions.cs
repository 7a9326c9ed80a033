using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Parallels;

/// <summary>Options of a new Parallels image (QAPI BlockdevCreateOptionsParallels without the file node).</summary>
internal sealed record ParallelsCreateOptions
{
    public required long Size { get; init; }

    public long ClusterSize { get; init; } = ParallelsFormat.DefaultClusterSize;

    /// <summary>preallocation=metadata (qemu-img's line only): every cluster mapped from the start, the file sparse.</summary>
    public bool MapAll { get; init; }

    /// <summary>Binds size and cluster-size and checks them in the order of QEMU's parallels_co_create.</summary>
    public static ParallelsCreateOptions Read(OptionReader r)
    {
        var o = new ParallelsCreateOptions
        {
            Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
            ClusterSize = r.GetSize("cluster-size") ?? ParallelsFormat.DefaultClusterSize,
        };
        if ((ulong)o.ClusterSize >= long.MaxValue / ParallelsFormat.MaxImageFactor)
        {
            throw BlockException.Invalid("Cluster size is too large");
        }

        if ((ulong)o.Size >= ParallelsFormat.MaxImageFactor * (ulong)o.ClusterSize)
        {
            throw new BlockException(Errno.EFBIG, "Image size is too large for this cluster size");
        }

        if (o.Size % ParallelsFormat.SectorSize != 0)
        {
            throw BlockException.Invalid("Image size must be a multiple of 512 bytes");
        }

        if (o.ClusterSize % ParallelsFormat.SectorSize != 0)
        {
            throw BlockException.Invalid("Cluster size must be a multiple of 512 bytes");
        }

        return o;
    }
}
