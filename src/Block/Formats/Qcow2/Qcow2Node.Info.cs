using System.Text.Json;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>What queries show of a qcow2 image (QEMU's qcow2_get_info and qcow2_get_specific_info).</summary>
public sealed partial class Qcow2Node : IImageInfoSource
{
    public BlockDriverInfo? DriverInfo => new(_clusterSize, _header.IsDirty);

    public FormatSpecificInfo? SpecificInfo
    {
        get
        {
            var v3 = _header.Version >= 3;
            var info = new Qcow2SpecificInfo
            {
                Compat = v3 ? "1.1" : "0.10",
                RefcountBits = 1 << _header.RefcountOrder,
                CompressionType = _header.CompressionType == Qcow2Format.CompressionZstd ? "zstd" : "zlib",
                LazyRefcounts = v3 ? _header.LazyRefcounts : null,
                Corrupt = v3 ? _header.IsCorrupt : null,
                ExtendedL2 = v3 ? _header.ExtendedL2 : null,
                DataFile = v3 ? _header.DataFile : null,
                DataFileRaw = v3 && _header.HasDataFile ? _header.DataFileRaw : null,
                Encrypt = _crypto?.Describe(),
                Bitmaps = v3 && _storedBitmaps.Count > 0 ? _storedBitmaps.ConvertAll(BitmapInfo) : null,
            };
            return new FormatSpecificInfo("qcow2", JsonSerializer.SerializeToNode(info, Qcow2JsonContext.Default.Qcow2SpecificInfo)!);
        }
    }

    private static Qcow2BitmapInfo BitmapInfo(Qcow2BitmapEntry e)
    {
        var flags = new List<string>();
        if (e.InUse)
        {
            flags.Add("in-use");
        }

        if (e.Auto)
        {
            flags.Add("auto");
        }

        return new Qcow2BitmapInfo(flags, e.Name, e.Granularity);
    }

    public BackingFileName? BackingFile => _header.BackingFile is { Length: > 0 } name ? new BackingFileName(name, _header.BackingFormat) : null;
}
