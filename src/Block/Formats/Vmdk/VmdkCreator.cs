using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Creates vmdk images as qemu-img does (vmdk_co_do_create): the extents first (a sparse extent gets
/// its header, both grain directories and empty grain tables; a flat one its size), then the
/// descriptor — embedded in a monolithic sparse file, or a text file of its own.
/// </summary>
internal static class VmdkCreator
{
    /// <summary>Extents of split images are at most 2 GiB.</summary>
    private const long SplitSize = 0x80000000;

    private const uint Granularity = 128;
    private const uint TableEntries = 512;

    public static async ValueTask CreateAsync(BlockGraph graph, VmdkCreateOptions o, IVmdkCreateTargets targets, string imageFileName)
    {
        var hwVersion = o.HwVersion;
        if (o.Compat6)
        {
            if (hwVersion is not null)
            {
                throw BlockException.Invalid("compat6 cannot be enabled with hwversion set");
            }

            hwVersion = "6";
        }

        if (o.IsFlat && o.BackingFile is not null)
        {
            throw BlockException.NotSupported("Flat image can't have backing file");
        }

        if (o.IsFlat && o.ZeroedGrain)
        {
            throw BlockException.NotSupported("Flat image can't enable zeroed grain");
        }

        var extentSize = o.IsSplit ? SplitSize : o.Size;
        var monolithic = !o.IsSplit && !o.IsFlat;
        var lines = new List<VmdkExtentLine>();
        var main = await targets.GetAsync(0).ConfigureAwait(false);
        try
        {
            if (monolithic)
            {
                await InitExtentAsync(main, o.Size, o).ConfigureAwait(false);
                lines.Add(Line(o, o.Size, main));
            }

            var parentCid = VmdkFormat.NoParentCid;
            if (o.BackingFile is { } backing)
            {
                parentCid = await ReadParentCidAsync(graph, BackingFileName.Resolve(imageFileName, backing)).ConfigureAwait(false);
            }

            long created = monolithic ? o.Size : 0;
            var index = 1;
            while (created < o.Size)
            {
                var size = Math.Min(o.Size - created, extentSize);
                var extent = await targets.GetAsync(index).ConfigureAwait(false);
                try
                {
                    await InitExtentAsync(extent, size, o).ConfigureAwait(false);
                    lines.Add(Line(o, size, extent));
                }
                finally
                {
                    await targets.ReleaseAsync(extent).ConfigureAwait(false);
                }

                created += size;
                index++;
            }

            if (targets.HasUnused(index))
            {
                throw BlockException.Invalid("List of extents contains unused extents");
            }

            var heads = o.AdapterType == "ide" ? 16 : 255;
            var text = Encoding.UTF8.GetBytes(VmdkDescriptor.Build(
                (uint)RandomNumberGenerator.GetInt32(int.MaxValue), parentCid, o.Subformat,
                o.BackingFile, lines,
                hwVersion ?? "4", o.Size / (63L * heads * VmdkFormat.SectorSize), heads, o.AdapterType, o.ToolsVersion ?? "2147483647"));
            if (monolithic)
            {
                await main.WriteAsync(VmdkFormat.SectorSize, text).ConfigureAwait(false);
            }
            else
            {
                await main.TruncateAsync(0).ConfigureAwait(false);
                await main.TruncateAsync(text.Length).ConfigureAwait(false);
                await main.WriteAsync(0, text).ConfigureAwait(false);
            }

            await main.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            await targets.ReleaseAsync(main).ConfigureAwait(false);
        }
    }

    private static VmdkExtentLine Line(VmdkCreateOptions o, long size, BlockNode file) =>
        new("RW", (size + VmdkFormat.SectorSize - 1) / VmdkFormat.SectorSize, o.IsFlat ? VmdkExtentLine.Flat : VmdkExtentLine.Sparse, Path.GetFileName(file.FileName), 0);

    /// <summary>The parent must be a vmdk image; its CID becomes the new image's parentCID.</summary>
    private static async ValueTask<uint> ReadParentCidAsync(BlockGraph graph, string path)
    {
        var protocol = await ImageCreation.OpenProtocolAsync(graph, path).ConfigureAwait(false);
        string format;
        try
        {
            format = await graph.Probes.ProbeAsync(protocol).ConfigureAwait(false);
        }
        finally
        {
            await graph.RemoveAsync(protocol.NodeName).ConfigureAwait(false);
        }

        if (format != "vmdk")
        {
            throw BlockException.Invalid($"Invalid backing file format: {format}. Must be vmdk");
        }

        var parent = await graph.AddAsync(new JsonObject
        {
            ["driver"] = "vmdk",
            ["file"] = graph.ProtocolOptions(path),
            ["read-only"] = true,
            ["backing"] = null,
        }).ConfigureAwait(false);
        var cid = ((VmdkNode)parent).Cid;
        await graph.RemoveAsync(parent.NodeName).ConfigureAwait(false);
        return cid;
    }

    /// <summary>
    /// QEMU's vmdk_init_extent: a flat extent is its size; a sparse one gets a header (64 KiB grains,
    /// 512-entry grain tables, room for an embedded descriptor), the redundant grain directory with
    /// its tables, the grain directory with its tables, and grains from a 64 KiB boundary on.
    /// </summary>
    private static async ValueTask InitExtentAsync(BlockNode file, long size, VmdkCreateOptions o)
    {
        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        if (o.IsFlat)
        {
            await file.TruncateAsync(size).ConfigureAwait(false);
            return;
        }

        var compress = o.IsCompressed;
        var capacity = (ulong)(size / VmdkFormat.SectorSize);
        var grains = (capacity + Granularity - 1) / Granularity;
        const ulong tableSectors = TableEntries * 4 / VmdkFormat.SectorSize;
        var tableCount = (grains + TableEntries - 1) / TableEntries;
        var directorySectors = ((tableCount * 4) + VmdkFormat.SectorSize - 1) / VmdkFormat.SectorSize;
        const ulong descriptorOffset = 1;
        var redundant = descriptorOffset + VmdkFormat.EmbeddedDescriptorSectors;
        var directory = redundant + directorySectors + (tableSectors * tableCount);
        var grainOffset = (directory + directorySectors + (tableSectors * tableCount) + Granularity - 1) / Granularity * Granularity;
        var header = new VmdkSparseHeader
        {
            Version = compress ? 3u : o.ZeroedGrain ? 2u : 1u,
            Flags = VmdkFormat.FlagRedundantGrainDirectory | VmdkFormat.FlagNewlineDetect |
                    (compress ? VmdkFormat.FlagCompressed | VmdkFormat.FlagMarkers : 0) |
                    (o.ZeroedGrain ? VmdkFormat.FlagZeroGrain : 0),
            Compression = compress ? VmdkFormat.CompressionDeflate : (ushort)0,
            Capacity = capacity,
            Granularity = Granularity,
            GrainTableEntries = TableEntries,
            DescriptorOffset = descriptorOffset,
            DescriptorSize = VmdkFormat.EmbeddedDescriptorSectors,
            RedundantGrainDirectoryOffset = redundant,
            GrainDirectoryOffset = directory,
            GrainOffset = grainOffset,
        };
        var sector = new byte[VmdkFormat.SectorSize];
        header.Write(sector);
        await file.TruncateAsync((long)grainOffset * VmdkFormat.SectorSize).ConfigureAwait(false);
        await file.WriteAsync(0, sector).ConfigureAwait(false);
        await WriteDirectoryAsync(file, redundant, directorySectors, tableCount, tableSectors).ConfigureAwait(false);
        await WriteDirectoryAsync(file, directory, directorySectors, tableCount, tableSectors).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>A grain directory at <paramref name="at"/> naming the tables that follow it back to back.</summary>
    private static async ValueTask WriteDirectoryAsync(BlockNode file, ulong at, ulong sectors, ulong tables, ulong tableSectors)
    {
        var gd = new byte[sectors * VmdkFormat.SectorSize];
        for (ulong i = 0; i < tables; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(gd.AsSpan((int)(i * 4)), (uint)(at + sectors + (i * tableSectors)));
        }

        if (gd.Length > 0)
        {
            await file.WriteAsync((long)at * VmdkFormat.SectorSize, gd).ConfigureAwait(false);
        }
    }
}
