using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qed;

/// <summary>Options of a new QED image (QAPI BlockdevCreateOptionsQed without the file node).</summary>
internal sealed record QedCreateOptions
{
    public required long Size { get; init; }

    public string? BackingFile { get; init; }

    public string? BackingFormat { get; init; }

    public long ClusterSize { get; init; } = QedFormat.DefaultClusterSize;

    public long TableSize { get; init; } = QedFormat.DefaultTableSize;

    /// <summary>Binds size, backing-file, backing-fmt, cluster-size and table-size and checks them as QEMU's bdrv_qed_co_create.</summary>
    public static QedCreateOptions Read(OptionReader r)
    {
        var o = new QedCreateOptions
        {
            Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
            BackingFile = r.GetString("backing-file"),
            BackingFormat = r.GetString("backing-fmt"),
            ClusterSize = r.GetSize("cluster-size") ?? QedFormat.DefaultClusterSize,
            TableSize = r.GetSize("table-size") ?? QedFormat.DefaultTableSize,
        };
        if (!QedFormat.IsClusterSizeValid((ulong)o.ClusterSize))
        {
            throw BlockException.Invalid(
                $"QED cluster size must be within range [{QedFormat.MinClusterSize}, {QedFormat.MaxClusterSize}] and power of 2");
        }

        if (!QedFormat.IsTableSizeValid((ulong)o.TableSize))
        {
            throw BlockException.Invalid(
                $"QED table size must be within range [{QedFormat.MinTableSize}, {QedFormat.MaxTableSize}] and power of 2");
        }

        if (o.Size < 0 || !QedFormat.IsImageSizeValid((ulong)o.Size, (ulong)o.ClusterSize, (ulong)o.TableSize))
        {
            throw BlockException.Invalid(
                $"QED image size must be a non-zero multiple of cluster size and less than {QedFormat.MaxImageSize((ulong)o.ClusterSize, (ulong)o.TableSize)} bytes");
        }

        if (o.BackingFormat is not null && o.BackingFile is null)
        {
            throw BlockException.Invalid("Backing format cannot be used without backing file");
        }

        return o;
    }
}
