using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Reading an image's files (QEMU's vmdk_open): a sparse file with its embedded descriptor, a COWD
/// file, or a text descriptor whose extent lines name the files (flat, sparse, COWD, seSparse).
/// Every header is checked before anything it points to is read or allocated.
/// </summary>
internal sealed partial class VmdkDriver
{
    /// <summary>Create types QEMU opens from a descriptor file.</summary>
    private static readonly string[] DescriptorCreateTypes =
        ["monolithicFlat", "vmfs", "vmfsSparse", "seSparse", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"];

    private const int FooterBytes = 3 * VmdkFormat.SectorSize;

    private static async ValueTask<VmdkImage> OpenImageAsync(BlockOpenContext context, BlockNode file)
    {
        var name = file.FileName;
        if (file.Length < 4)
        {
            throw BlockException.Invalid("File is too small, not a valid image");
        }

        var head = await ReadAsync(file, 0, (int)Math.Min(file.Length, VmdkFormat.MaxDescriptorBytes)).ConfigureAwait(false);
        switch (BinaryPrimitives.ReadUInt32BigEndian(head))
        {
            case VmdkFormat.SparseMagic:
                var header = VmdkSparseHeader.Parse(head, name);
                if (header.Capacity == 0 && header.DescriptorOffset != 0)
                {
                    // A sparse file that only carries a descriptor naming the real extents.
                    var (text, location) = await ReadEmbeddedDescriptorAsync(file, header).ConfigureAwait(false);
                    return await OpenDescriptorAsync(context, file, text, location).ConfigureAwait(false);
                }

                var extent = await OpenHostedAsync(file, 0, string.Empty, header).ConfigureAwait(false);
                VmdkDescriptor? descriptor = null;
                VmdkDescriptorLocation? where = null;
                if (header.DescriptorOffset != 0 && header.DescriptorSize != 0)
                {
                    var (text, location) = await ReadEmbeddedDescriptorAsync(file, header).ConfigureAwait(false);
                    (descriptor, where) = (VmdkDescriptor.Parse(text, name), location);
                }

                return new VmdkImage([extent], extent.IsCompressed ? "streamOptimized" : "monolithicSparse", descriptor, where);
            case VmdkFormat.CowdMagic:
                return new VmdkImage([await OpenCowdAsync(file, 0, string.Empty, head).ConfigureAwait(false)], string.Empty, null, null);
            default:
                return await OpenDescriptorAsync(context, file, head, new VmdkDescriptorLocation(file, 0, VmdkFormat.MaxDescriptorBytes, IsFile: true)).ConfigureAwait(false);
        }
    }

    private static async ValueTask<byte[]> ReadAsync(BlockNode file, long offset, int length)
    {
        var bytes = new byte[length];
        if (length > 0)
        {
            await file.ReadAsync(offset, bytes).ConfigureAwait(false);
        }

        return bytes;
    }

    private static async ValueTask<(byte[] Text, VmdkDescriptorLocation Location)> ReadEmbeddedDescriptorAsync(BlockNode file, VmdkSparseHeader header)
    {
        var offset = Bytes(header.DescriptorOffset, "desc_offset", file);
        if (offset >= file.Length)
        {
            throw BlockException.Invalid($"vmdk: descriptor (desc_offset 0x{offset:x}) of '{file.FileName}' lies beyond the end of the file ({file.Length} bytes)");
        }

        var capacity = Math.Min(header.DescriptorSize, VmdkFormat.MaxDescriptorBytes / VmdkFormat.SectorSize) * VmdkFormat.SectorSize;
        var length = (int)Math.Min(file.Length - offset, header.DescriptorSize == 0 ? VmdkFormat.MaxDescriptorBytes : (long)capacity);
        return (await ReadAsync(file, offset, length).ConfigureAwait(false), new VmdkDescriptorLocation(file, offset, length, IsFile: false));
    }

    /// <summary>A sector count of a header field as bytes, refused when it cannot be an offset in any file.</summary>
    private static long Bytes(ulong sectors, string field, BlockNode file) =>
        sectors <= long.MaxValue / VmdkFormat.SectorSize
            ? (long)sectors * VmdkFormat.SectorSize
            : throw BlockException.Invalid($"vmdk: {field} 0x{sectors:x} (sectors) of '{file.FileName}' is out of range");

    private static async ValueTask<VmdkImage> OpenDescriptorAsync(BlockOpenContext context, BlockNode file, byte[] text, VmdkDescriptorLocation location)
    {
        var descriptor = VmdkDescriptor.Parse(text, file.FileName);
        var createType = descriptor.CreateType ?? throw BlockException.Invalid("invalid VMDK image descriptor");
        if (!DescriptorCreateTypes.Contains(createType))
        {
            throw BlockException.NotSupported($"Unsupported image type '{createType}'");
        }

        var extents = new List<VmdkExtent>();
        long start = 0;
        foreach (var line in descriptor.Extents)
        {
            var path = BackingFileName.Resolve(file.FileName, line.FileName);
            var child = await HeaderBacking.OpenInlineAsync(context, $"extents.{extents.Count}", new JsonObject
            {
                ["driver"] = "file",
                ["filename"] = path,
            }).ConfigureAwait(false);
            var extent = await OpenExtentAsync(child, start, line).ConfigureAwait(false);
            extents.Add(extent);
            start += extent.Length;
        }

        if (extents.Count == 0)
        {
            throw BlockException.Invalid($"vmdk: descriptor '{file.FileName}' names no extent to read and write (RW)");
        }

        return new VmdkImage([.. extents], createType, descriptor, location);
    }

    private static async ValueTask<VmdkExtent> OpenExtentAsync(BlockNode file, long start, VmdkExtentLine line)
    {
        if (line.IsFlat)
        {
            if (line.Sectors > long.MaxValue / VmdkFormat.SectorSize || line.FlatOffset > long.MaxValue / VmdkFormat.SectorSize)
            {
                throw BlockException.Invalid($"Invalid extent line: {line}");
            }

            return new VmdkFlatExtent(file, start, line.Sectors * VmdkFormat.SectorSize, line.Type, line.FlatOffset * VmdkFormat.SectorSize);
        }

        if (file.Length < 4)
        {
            throw BlockException.Invalid($"File is too small, not a valid image ('{file.FileName}')");
        }

        var head = await ReadAsync(file, 0, (int)Math.Min(file.Length, VmdkFormat.SectorSize)).ConfigureAwait(false);
        if (line.Type == VmdkExtentLine.SeSparse)
        {
            return await OpenSeSparseAsync(file, start, line.Type, head).ConfigureAwait(false);
        }

        switch (BinaryPrimitives.ReadUInt32BigEndian(head))
        {
            case VmdkFormat.SparseMagic:
                var header = VmdkSparseHeader.Parse(head, file.FileName);
                if (header.Capacity == 0 && header.DescriptorOffset != 0)
                {
                    // QEMU would open its descriptor in turn, and loop forever on one naming itself.
                    throw BlockException.Invalid($"vmdk: extent '{file.FileName}' is itself a descriptor; nested descriptors are not supported");
                }

                return await OpenHostedAsync(file, start, line.Type, header).ConfigureAwait(false);
            case VmdkFormat.CowdMagic:
                return await OpenCowdAsync(file, start, line.Type, head).ConfigureAwait(false);
            default:
                throw BlockException.Invalid($"Image not in VMDK format ('{file.FileName}')");
        }
    }

    /// <summary>A hosted sparse extent; a stream whose grain directory is at the end is read through its footer.</summary>
    private static async ValueTask<VmdkSparseExtent> OpenHostedAsync(BlockNode file, long start, string type, VmdkSparseHeader header)
    {
        var name = file.FileName;
        var atEnd = header.GrainDirectoryOffset == VmdkFormat.GrainDirectoryAtEnd;
        if (atEnd)
        {
            header = await ReadFooterAsync(file).ConfigureAwait(false);
        }

        header.Validate(name);
        if (Bytes(header.GrainOffset, "grain_offset", file) > file.Length)
        {
            throw BlockException.Invalid($"File truncated, expecting at least {header.GrainOffset * VmdkFormat.SectorSize} bytes (grain_offset of '{name}')");
        }

        var layout = new VmdkSparseLayout
        {
            Kind = VmdkSparseKind.Hosted,
            Sectors = (long)header.Capacity,
            GrainBytes = (long)header.Granularity * VmdkFormat.SectorSize,
            TableEntries = (int)header.GrainTableEntries,
            DirectoryOffset = Bytes(header.GrainDirectoryOffset, "gd_offset", file),
            DirectoryEntries = header.GrainDirectoryEntries,
            RedundantDirectoryOffset = header.HasRedundantGrainDirectory ? Bytes(header.RedundantGrainDirectoryOffset, "rgd_offset", file) : 0,
            Compressed = header.IsCompressed,
            Markers = header.HasMarkers,
            ZeroGrains = header.HasZeroGrains,
            DirectoryAtEnd = atEnd,
            ReadOnlyVersion = header.Version == 3 && !header.IsCompressed,
        };
        return await VmdkSparseExtent.OpenAsync(file, start, type, layout).ConfigureAwait(false);
    }

    /// <summary>The footer of a stream: a footer marker, the header again, an end-of-stream marker, in the last three sectors.</summary>
    private static async ValueTask<VmdkSparseHeader> ReadFooterAsync(BlockNode file)
    {
        if (file.Length < FooterBytes)
        {
            throw BlockException.Invalid($"Invalid footer (file '{file.FileName}' too short)");
        }

        var footer = await ReadAsync(file, (file.Length & ~(long)(VmdkFormat.SectorSize - 1)) - FooterBytes, FooterBytes).ConfigureAwait(false);
        var marker = VmdkGrainMarker.Read(footer);
        var eos = VmdkGrainMarker.Read(footer.AsSpan(2 * VmdkFormat.SectorSize));
        var valid = BinaryPrimitives.ReadUInt32BigEndian(footer.AsSpan(VmdkFormat.SectorSize)) == VmdkFormat.SparseMagic &&
                    marker.Length == 0 && BinaryPrimitives.ReadUInt32LittleEndian(footer.AsSpan(12)) == VmdkFormat.MarkerFooter &&
                    eos.Lba == 0 && eos.Length == 0 &&
                    BinaryPrimitives.ReadUInt32LittleEndian(footer.AsSpan((2 * VmdkFormat.SectorSize) + 12)) == VmdkFormat.MarkerEndOfStream;
        if (!valid)
        {
            throw BlockException.Invalid($"Invalid footer (in '{file.FileName}')");
        }

        var header = VmdkSparseHeader.Parse(footer.AsSpan(VmdkFormat.SectorSize), file.FileName);
        if (header.GrainDirectoryOffset == VmdkFormat.GrainDirectoryAtEnd)
        {
            throw BlockException.Invalid($"Invalid footer (its gd_offset in '{file.FileName}' points at the footer again)");
        }

        return header;
    }

    private static async ValueTask<VmdkSparseExtent> OpenCowdAsync(BlockNode file, long start, string type, byte[] head)
    {
        var header = VmdkCowdHeader.Read(head, file.FileName);
        var layout = new VmdkSparseLayout
        {
            Kind = VmdkSparseKind.Cowd,
            Sectors = header.DiskSectors,
            GrainBytes = (long)header.Granularity * VmdkFormat.SectorSize,
            TableEntries = VmdkFormat.CowdGrainTableEntries,
            DirectoryOffset = (long)header.GrainDirectoryOffset * VmdkFormat.SectorSize,
            DirectoryEntries = header.GrainDirectoryEntries,
        };
        return await VmdkSparseExtent.OpenAsync(file, start, type, layout).ConfigureAwait(false);
    }

    private static async ValueTask<VmdkSparseExtent> OpenSeSparseAsync(BlockNode file, long start, string type, byte[] head)
    {
        var name = file.FileName;
        var header = SeSparseConstHeader.Read(head, name);
        var volatileOffset = Bytes(header.VolatileHeaderOffset, "volatile_header_offset", file);
        if (volatileOffset > file.Length - SeSparseVolatileHeader.Size)
        {
            throw BlockException.Invalid($"vmdk: seSparse volatile header (volatile_header_offset 0x{volatileOffset:x}) of '{name}' lies beyond the end of the file ({file.Length} bytes)");
        }

        var volatileHeader = SeSparseVolatileHeader.Read(await ReadAsync(file, volatileOffset, SeSparseVolatileHeader.Size).ConfigureAwait(false), name);
        var grainBytes = (long)header.GrainSize * VmdkFormat.SectorSize;
        var tableEntries = (int)(header.GrainTableSize * VmdkFormat.SectorSize / 8);
        if (header.Capacity > long.MaxValue / VmdkFormat.SectorSize)
        {
            throw BlockException.Invalid($"vmdk: seSparse capacity 0x{header.Capacity:x} of '{name}' is out of range");
        }

        var directoryBytes = Bytes(header.GrainDirectorySize, "grain_dir_size", file);
        var layout = new VmdkSparseLayout
        {
            Kind = VmdkSparseKind.SeSparse,
            Sectors = (long)header.Capacity,
            GrainBytes = grainBytes,
            TableEntries = tableEntries,
            DirectoryOffset = Bytes(header.GrainDirectoryOffset, "grain_dir_offset", file),
            DirectoryEntries = directoryBytes / 8,
            SeSparseTablesOffset = Bytes(header.GrainTablesOffset, "grain_tables_offset", file),
            SeSparseGrainsOffset = Bytes(header.GrainsOffset, "grains_offset", file),
            SeSparseTableSlots = (long)Math.Min(header.GrainTablesSize / header.GrainTableSize, int.MaxValue),
            SeSparseGrainSlots = (long)Math.Min(header.GrainsSize / header.GrainSize, 1UL << 59),
            SeSparseVolatile = volatileHeader,
            SeSparseVolatileOffset = volatileOffset,
        };
        return await VmdkSparseExtent.OpenAsync(file, start, type, layout).ConfigureAwait(false);
    }
}
