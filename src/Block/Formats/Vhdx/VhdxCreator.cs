using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// Writes new VHDX images laid out as QEMU's: file identifier, two headers, two region tables, the
/// log at 1 MiB, then the BAT, the metadata region and, 5 MiB past the BAT, the data. A
/// differencing image (a backing file given) has the has-parent flag, a parent locator naming the
/// parent by path and by its data write GUID, and every block NOT_PRESENT (showing the parent).
/// </summary>
internal static class VhdxCreator
{
    private const uint SectorSize = 512;

    /// <summary>
    /// Creates the image in <paramref name="file"/>; with a backing file, first opens the parent
    /// (relative to the new image) for its data write GUID, and the sizes must agree.
    /// </summary>
    public static async ValueTask CreateAsync(BlockGraph graph, BlockNode file, VhdxCreateOptions options)
    {
        if (options.BackingFile is { } backing)
        {
            // The parent's own headers and metadata only: its parents, if any, are not needed for its GUID and size.
            var protocol = await ImageCreation.OpenProtocolAsync(graph, BackingFileName.Resolve(file.FileName, backing)).ConfigureAwait(false);
            Guid linkage;
            long size;
            try
            {
                var parent = await VhdxNode.OpenAsync(protocol.NodeName + "-parent", true, protocol).ConfigureAwait(false);
                (linkage, size) = (parent.DataWriteGuid, parent.Length);
                await parent.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                await graph.RemoveAsync(protocol.NodeName).ConfigureAwait(false);
            }

            if (size != options.Size)
            {
                throw BlockException.Invalid($"vhdx: a differencing image must have the size of its parent ({size} bytes), not {options.Size}");
            }

            options = options with { ParentLinkage = linkage };
        }

        await CreateAsync(file, options).ConfigureAwait(false);
    }

    public static async ValueTask CreateAsync(BlockNode file, VhdxCreateOptions options)
    {
        var blockSize = options.EffectiveBlockSize();
        var metadata = new VhdxMetadata
        {
            BlockSize = blockSize,
            IsFixed = options.Fixed,
            VirtualSize = (ulong)options.Size,
            LogicalSectorSize = SectorSize,
            PhysicalSectorSize = SectorSize,
            Page83 = Guid.NewGuid(),
            HasParentImage = options.BackingFile is not null,
            ParentLocator = options.BackingFile is { } backing ? Locator(backing, options.ParentLinkage) : new Dictionary<string, string>(),
        };
        var entries = VhdxBlockTable.EntryCount(metadata.VirtualSize, blockSize, SectorSize, metadata.HasParentImage);
        var batOffset = RoundUp(VhdxFormat.HeaderSectionEnd + options.LogSize);
        var batLength = RoundUp(entries * 8);
        var metadataOffset = RoundUp(batOffset + batLength);
        var dataOffset = batOffset + batLength + (5L * VhdxFormat.MiB);

        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        await file.TruncateAsync(Math.Max(metadataOffset + VhdxFormat.MiB, dataOffset + (options.Fixed ? options.Size : 0))).ConfigureAwait(false);

        var head = new byte[VhdxFormat.HeaderSectionEnd];
        BinaryPrimitives.WriteUInt64LittleEndian(head, VhdxFormat.FileSignature);
        Encoding.Unicode.GetBytes("ExportServer", head.AsSpan(8, 512));
        var header = new VhdxHeader
        {
            Sequence = (ulong)Random.Shared.Next(),
            FileWriteGuid = Guid.NewGuid(),
            DataWriteGuid = Guid.NewGuid(),
            LogLength = (uint)options.LogSize,
            LogOffset = VhdxFormat.HeaderSectionEnd,
        };
        header.Write(head.AsSpan((int)VhdxFormat.Header1Offset));
        (header with { Sequence = header.Sequence + 1 }).Write(head.AsSpan((int)VhdxFormat.Header2Offset));
        var regions = new VhdxRegionTable { Bat = (batOffset, (uint)batLength), Metadata = (metadataOffset, VhdxFormat.MiB) };
        regions.Write(head.AsSpan((int)VhdxFormat.RegionTable1Offset));
        regions.Write(head.AsSpan((int)VhdxFormat.RegionTable2Offset));
        await file.WriteAsync(0, head).ConfigureAwait(false);

        var state = metadata.HasParentImage ? VhdxBlockTable.NotPresent
            : options.BlockStateZero ? VhdxBlockTable.Zero
            : options.Fixed ? VhdxBlockTable.FullyPresent
            : VhdxBlockTable.NotPresent;
        if (state != VhdxBlockTable.NotPresent)
        {
            var bat = new byte[batLength];
            var chunkRatio = VhdxBlockTable.ChunkRatio(blockSize, SectorSize);
            var blocks = (options.Size + blockSize - 1) / blockSize;
            for (long b = 0; b < blocks; b++)
            {
                var entry = state == VhdxBlockTable.FullyPresent ? (ulong)RoundUp(dataOffset + (b * blockSize)) | state : state;
                BinaryPrimitives.WriteUInt64LittleEndian(bat.AsSpan((int)((b + (b / chunkRatio)) * 8)), entry);
            }

            await file.WriteAsync(batOffset, bat).ConfigureAwait(false);
        }

        var region = new byte[metadata.EncodedLength];
        metadata.Write(region);
        await file.WriteAsync(metadataOffset, region).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>The locator's entries: the parent's data write GUID and its path with Windows separators, relative or absolute as given.</summary>
    private static Dictionary<string, string> Locator(string backing, Guid linkage) => new(StringComparer.Ordinal)
    {
        ["parent_linkage"] = linkage.ToString("B"),
        [Path.IsPathRooted(backing) ? "absolute_win32_path" : "relative_path"] = backing.Replace('/', '\\'),
    };

    private static long RoundUp(long value) => (value + VhdxFormat.MiB - 1) / VhdxFormat.MiB * VhdxFormat.MiB;
}
