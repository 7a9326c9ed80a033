using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// Writes new VHD images as QEMU's vpc_co_create: a dynamic disk is footer copy, dynamic header,
/// an empty BAT for 2 MiB blocks and the footer; a fixed disk is the data area and the footer.
/// </summary>
internal static class VpcCreator
{
    /// <summary>Formats <paramref name="file"/> (its old contents are discarded).</summary>
    public static async ValueTask CreateAsync(BlockNode file, VpcCreateOptions options)
    {
        var (geometry, sectors) = VpcGeometry.ForNewImage(options.Size, options.ForceSize);
        if (options.Size != sectors * VpcFormat.SectorSize)
        {
            throw new BlockException(Errno.EINVAL, "The requested image size cannot be represented in CHS geometry",
                hint: $"Try size={sectors * VpcFormat.SectorSize} or force-size=on (the latter makes the image incompatible with Virtual PC)");
        }

        var footer = new VpcFooter
        {
            DataOffset = options.Fixed ? ulong.MaxValue : VpcFormat.FooterSize,
            Timestamp = (uint)(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - VpcFormat.TimestampBase),
            CreatorApp = options.ForceSize ? "qem2" : "qemu",
            OriginalSize = (ulong)options.Size,
            CurrentSize = (ulong)options.Size,
            Cylinders = geometry.Cylinders,
            Heads = geometry.Heads,
            SectorsPerTrack = geometry.SectorsPerTrack,
            DiskType = options.Fixed ? VpcFormat.DiskFixed : VpcFormat.DiskDynamic,
            UniqueId = Guid.NewGuid(),
        };
        var footerBytes = new byte[VpcFormat.FooterSize];
        footer.Write(footerBytes);

        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        if (options.Fixed)
        {
            await file.TruncateAsync(options.Size + VpcFormat.FooterSize).ConfigureAwait(false);
            await file.WriteAsync(options.Size, footerBytes).ConfigureAwait(false);
        }
        else
        {
            var entries = (sectors + (VpcFormat.DefaultBlockSize / VpcFormat.SectorSize) - 1) / (VpcFormat.DefaultBlockSize / VpcFormat.SectorSize);
            var tableBytes = ((entries * 4) + VpcFormat.SectorSize - 1) & ~(long)(VpcFormat.SectorSize - 1);
            var image = new byte[VpcFormat.CreatedTableOffset + tableBytes + VpcFormat.FooterSize];
            footerBytes.CopyTo(image, 0);
            new VpcDynamicHeader { MaxTableEntries = (uint)entries }.Write(image.AsSpan(VpcFormat.FooterSize));
            image.AsSpan((int)VpcFormat.CreatedTableOffset, (int)tableBytes).Fill(0xff);
            footerBytes.CopyTo(image, image.Length - VpcFormat.FooterSize);
            await file.TruncateAsync(image.Length).ConfigureAwait(false);
            await file.WriteAsync(0, image).ConfigureAwait(false);
        }

        await file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Creates the file at <paramref name="path"/> through its protocol and formats it.</summary>
    public static ValueTask CreateAsync(BlockGraph graph, string path, VpcCreateOptions options) =>
        ImageCreation.FormatNewFileAsync(graph, path, file => CreateAsync(file, options));
}
