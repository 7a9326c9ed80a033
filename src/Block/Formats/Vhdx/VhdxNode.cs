using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// A VHDX image as a block node. Opening reads the two headers (the valid one with the higher
/// sequence number is current) and, if the log holds entries, replays them before anything else is
/// read: into the file when writable, in memory when read-only (<see cref="VhdxReplayedFile"/>).
/// Then the region table, the metadata and the BAT. Writes: see VhdxNode.Write.cs.
/// </summary>
internal sealed partial class VhdxNode : BlockNode, IImageInfoSource
{
    /// <summary>Metadata regions are 1 MiB in practice; a larger one is refused rather than read whole.</summary>
    private const long MaxMetadataRegion = 16L * VhdxFormat.MiB;

    /// <summary>How far a replayed log may extend the file (a log describes metadata, a few blocks' worth at most).</summary>
    private const long MaxLogGrowth = 64L << 30;

    private readonly BlockNode _file;
    private readonly BlockNode _source;
    private readonly VhdxMetadata _metadata;
    private readonly VhdxBlockTable _table;
    private readonly long _blockSize;
    private VhdxHeader _header;
    private int _currentHeader;

    private VhdxNode(string nodeName, bool readOnly, BlockNode file, BlockNode source, VhdxHeader header, int currentHeader, VhdxMetadata metadata, VhdxBlockTable table)
        : base(nodeName, readOnly)
    {
        _file = file;
        _source = source;
        _header = header;
        _currentHeader = currentHeader;
        _metadata = metadata;
        _table = table;
        _blockSize = metadata.BlockSize;
        Length = (long)metadata.VirtualSize;
        _differencing = metadata.HasParentImage;
        _sectorSize = metadata.LogicalSectorSize;

        // A differencing image tells this file from its parent per logical sector, so requests come whole sectors.
        Limits = new BlockLimits(
            RequestAlignment: _differencing ? (int)_sectorSize : 1,
            OptimalTransfer: (int)Math.Min(_blockSize, 4 * VhdxFormat.MiB));
        Capabilities = new BlockCapabilities(WriteZeroes: true, FastZero: file.CanFastZero, Backing: _differencing);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "vhdx";

    /// <summary>QEMU's vhdx_get_info: the block is the cluster.</summary>
    public BlockDriverInfo? DriverInfo => new(_blockSize, false);

    internal VhdxMetadata Metadata => _metadata;

    /// <summary>The data write GUID of the current header: what a child records as its parent_linkage.</summary>
    internal Guid DataWriteGuid => _header.DataWriteGuid;

    public static async ValueTask<VhdxNode> OpenAsync(string nodeName, bool readOnly, BlockNode file)
    {
        var fileLength = file.Length;
        var head = new byte[8];
        await file.ReadAsync(0, head.AsMemory(0, (int)Math.Min(8, fileLength))).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt64LittleEndian(head) != VhdxFormat.FileSignature || fileLength < VhdxFormat.HeaderSectionEnd)
        {
            throw BlockException.Invalid("vhdx: no 'vhdxfile' file identifier at the start of a header section");
        }

        var (header, current) = await ReadHeadersAsync(file).ConfigureAwait(false);
        var source = file;
        if (header.LogGuid != Guid.Empty)
        {
            source = await ReplayAsync(file, header, readOnly).ConfigureAwait(false);
            if (!readOnly)
            {
                (header, current) = await WriteHeadersAsync(file, header with { LogGuid = Guid.Empty }, current).ConfigureAwait(false);
            }
        }

        var block = new byte[VhdxFormat.HeaderBlockSize];
        await source.ReadAsync(VhdxFormat.RegionTable1Offset, block).ConfigureAwait(false);
        var regions = VhdxRegionTable.Read(block, source.Length);
        if (regions.Metadata.Length > MaxMetadataRegion)
        {
            throw BlockException.Invalid($"vhdx: metadata region of {regions.Metadata.Length} bytes is larger than the 16 MiB this driver reads");
        }

        var metadataBytes = new byte[regions.Metadata.Length];
        await source.ReadAsync(regions.Metadata.Offset, metadataBytes).ConfigureAwait(false);
        var metadata = VhdxMetadata.Read(metadataBytes);
        var batBytes = new byte[Math.Min(regions.Bat.Length,
            VhdxBlockTable.EntryCount(metadata.VirtualSize, metadata.BlockSize, metadata.LogicalSectorSize, metadata.HasParentImage) * 8)];
        await source.ReadAsync(regions.Bat.Offset, batBytes).ConfigureAwait(false);
        var table = VhdxBlockTable.Read(batBytes, regions.Bat.Offset, metadata);
        table.Validate(metadata.BlockSize, source.Length,
        [
            (0, VhdxFormat.HeaderSectionEnd, "header section"),
            ((long)header.LogOffset, header.LogLength, "log"),
            (regions.Bat.Offset, regions.Bat.Length, "BAT region"),
            (regions.Metadata.Offset, regions.Metadata.Length, "metadata region"),
        ]);
        return new VhdxNode(nodeName, readOnly, file, source, header, current, metadata, table);
    }

    /// <summary>Both headers; the valid one with the higher sequence number is current (QEMU's vhdx_parse_header).</summary>
    private static async ValueTask<(VhdxHeader Header, int Index)> ReadHeadersAsync(BlockNode file)
    {
        var bytes = new byte[VhdxFormat.HeaderSize];
        await file.ReadAsync(VhdxFormat.Header1Offset, bytes).ConfigureAwait(false);
        var h1 = VhdxHeader.TryRead(bytes);
        await file.ReadAsync(VhdxFormat.Header2Offset, bytes).ConfigureAwait(false);
        var h2 = VhdxHeader.TryRead(bytes);
        var (header, index) = (h1, h2) switch
        {
            (null, null) => throw BlockException.Invalid("No valid VHDX header found (both headers fail their checksum, signature or version)"),
            (not null, null) => (h1, 0),
            (null, not null) => (h2, 1),
            _ when h1!.Sequence > h2!.Sequence => (h1, 0),
            _ when h2!.Sequence > h1!.Sequence => (h2, 1),
            _ when h1 == h2 => (h1, 0),
            _ => throw BlockException.Invalid($"No valid VHDX header found (both headers have sequence number {h1!.Sequence} but differ)"),
        };

        if (header.LogOffset % VhdxFormat.MiB != 0 || header.LogLength % VhdxFormat.MiB != 0 || header.LogOffset < VhdxFormat.HeaderSectionEnd ||
            header.LogOffset > (ulong)file.Length || header.LogLength > file.Length - (long)header.LogOffset)
        {
            throw BlockException.Invalid($"vhdx: log (offset 0x{header.LogOffset:x}, length {header.LogLength}) is not 1 MiB-aligned inside the file");
        }

        return (header, index);
    }

    /// <summary>
    /// Writes <paramref name="header"/> over both headers, each time over the one that is not current
    /// with the next sequence number, flushing after each (the specification's update procedure).
    /// </summary>
    private static async ValueTask<(VhdxHeader Header, int Index)> WriteHeadersAsync(BlockNode file, VhdxHeader header, int current)
    {
        var bytes = new byte[VhdxFormat.HeaderSize];
        for (var i = 0; i < 2; i++)
        {
            current = 1 - current;
            header = header with { Sequence = header.Sequence + 1 };
            header.Write(bytes);
            await file.WriteAsync(current == 0 ? VhdxFormat.Header1Offset : VhdxFormat.Header2Offset, bytes).ConfigureAwait(false);
            await file.FlushAsync().ConfigureAwait(false);
        }

        return (header, current);
    }

    /// <summary>
    /// Replays the log: into the file (then flushed) when writable, else into a view of it. The log
    /// is read whole; one larger than <see cref="VhdxFormat.MaxReplayedLog"/> is refused.
    /// </summary>
    private static async ValueTask<BlockNode> ReplayAsync(BlockNode file, VhdxHeader header, bool readOnly)
    {
        if (header.LogLength > VhdxFormat.MaxReplayedLog)
        {
            throw BlockException.Invalid($"vhdx: log length {header.LogLength} is larger than the {VhdxFormat.MaxReplayedLog} bytes this driver replays");
        }

        var log = new byte[header.LogLength];
        await file.ReadAsync((long)header.LogOffset, log).ConfigureAwait(false);
        var (changes, last) = VhdxLog.Replay(log, header.LogGuid, [((long)header.LogOffset, header.LogLength)]);
        if (changes.Count == 0)
        {
            return file;
        }

        if (readOnly)
        {
            return new VhdxReplayedFile(file, changes, last);
        }

        var end = Math.Max(last, changes.Max(c => c.Offset + c.Length));
        if (end - file.Length > MaxLogGrowth)
        {
            throw BlockException.Invalid($"vhdx: log replay would grow the file from {file.Length} to {end} bytes");
        }

        if (file.Length < end)
        {
            await file.TruncateAsync(end).ConfigureAwait(false);
        }

        foreach (var c in changes)
        {
            if (c.Data is null)
            {
                await file.WriteZeroesAsync(c.Offset, c.Length).ConfigureAwait(false);
            }
            else
            {
                await file.WriteAsync(c.Offset, c.Data).ConfigureAwait(false);
            }
        }

        await file.FlushAsync().ConfigureAwait(false);
        return file;
    }

    private long HostOffset(long offset)
    {
        var entry = _table[offset / _blockSize];
        return (entry & VhdxBlockTable.StateMask) == VhdxBlockTable.FullyPresent
            ? (long)(entry & VhdxBlockTable.OffsetMask) + (offset % _blockSize)
            : -1;
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        _differencing
            ? ReadDifferencingAsync(offset, buffer)
            : BlockMapping.ReadAsync(_source, offset, buffer, _blockSize, HostOffset);

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        _differencing
            ? DifferencingStatusAsync(offset, length)
            : ValueTask.FromResult(BlockMapping.Status(offset, length, _blockSize, HostOffset));
}
