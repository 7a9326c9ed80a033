using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>Writes new QED images as QEMU does: one header cluster (with the backing file name after the header) and an empty L1 table.</summary>
internal static class QedCreator
{
    public static async ValueTask CreateAsync(BlockNode file, QedCreateOptions options)
    {
        var name = options.BackingFile is null ? [] : Encoding.UTF8.GetBytes(options.BackingFile);
        if (QedFormat.HeaderLength + name.Length > options.ClusterSize)
        {
            throw BlockException.Invalid("Backing file name too long for one QED header cluster");
        }

        var features = options.BackingFile is null ? 0
            : QedFormat.FeatureBackingFile | (options.BackingFormat == "raw" ? QedFormat.FeatureBackingFormatNoProbe : 0);
        var header = new QedHeader
        {
            ClusterSize = (uint)options.ClusterSize,
            TableSize = (uint)options.TableSize,
            HeaderSize = 1,
            Features = features,
            L1TableOffset = (ulong)options.ClusterSize,
            ImageSize = (ulong)options.Size,
            BackingNameOffset = options.BackingFile is null ? 0u : QedFormat.HeaderLength,
            BackingNameSize = (uint)name.Length,
        };
        var first = new byte[QedFormat.HeaderLength + name.Length];
        header.Write(first);
        name.CopyTo(first, QedFormat.HeaderLength);
        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        // The L1 table is all zeroes: the file's hole is the table.
        await file.TruncateAsync(options.ClusterSize * (1 + options.TableSize)).ConfigureAwait(false);
        await file.WriteAsync(0, first).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
    }
}
