using System.Text.Json;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>What queries show of a vmdk image (QEMU's vmdk_co_get_info and vmdk_get_specific_info).</summary>
internal sealed partial class VmdkNode : IImageInfoSource
{
    /// <summary>The grain size when every extent is sparse alike (flat: none); nothing when the extents differ.</summary>
    public BlockDriverInfo? DriverInfo
    {
        get
        {
            var first = _extents[0];
            var alike = _extents.All(e => e.IsFlat == first.IsFlat && e.IsCompressed == first.IsCompressed && (e.IsFlat || e.GrainSize == first.GrainSize));
            return alike ? new BlockDriverInfo(first.GrainSize ?? 0, false) : null;
        }
    }

    public FormatSpecificInfo? SpecificInfo => new("vmdk", JsonSerializer.SerializeToNode(new VmdkSpecificInfo
    {
        CreateType = CreateType,
        Cid = Cid,
        ParentCid = ParentCid,
        Extents = _extents.Select(e => new VmdkExtentInfo
        {
            FileName = e.File.FileName,
            Format = e.Type,
            VirtualSize = e.Length,
            ClusterSize = e.GrainSize,
            Compressed = e.IsCompressed ? true : null,
        }).ToList(),
    }, VmdkJsonContext.Default.VmdkSpecificInfo)!);

    public BackingFileName? BackingFile => _descriptor?.ParentFileNameHint is { Length: > 0 } name ? new BackingFileName(name, "vmdk") : null;
}
