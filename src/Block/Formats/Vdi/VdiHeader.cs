using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>
/// The 512-byte VDI header (little-endian): image type, where the block map and the data start,
/// disk and block sizes and the allocated-block count. <see cref="Read"/> refuses what QEMU refuses,
/// in its words.
/// </summary>
internal sealed record VdiHeader
{
    private const int OffText = 0;
    private const int TextLength = 64;
    private const int OffSignature = 64;
    private const int OffVersion = 68;
    private const int OffHeaderSize = 72;
    private const int OffImageType = 76;
    private const int OffImageFlags = 80;
    private const int OffBlockMap = 340;
    private const int OffData = 344;
    private const int OffSectorSize = 360;
    private const int OffDiskSize = 368;
    private const int OffBlockSize = 376;
    private const int OffBlocksInImage = 384;
    internal const int OffBlocksAllocated = 388;
    private const int OffUuidImage = 392;
    private const int OffUuidLastSnapshot = 408;
    private const int OffUuidLink = 424;
    private const int OffUuidParent = 440;

    public string Text { get; init; } = VdiFormat.Text;

    public uint HeaderSize { get; init; } = 0x180;

    public uint ImageType { get; init; } = VdiFormat.TypeDynamic;

    public uint ImageFlags { get; init; }

    public uint BlockMapOffset { get; init; } = VdiFormat.HeaderSize;

    public uint DataOffset { get; init; }

    public uint SectorSize { get; init; } = VdiFormat.SectorSize;

    public ulong DiskSize { get; init; }

    public uint BlockSize { get; init; } = VdiFormat.BlockSize;

    public uint BlocksInImage { get; init; }

    public uint BlocksAllocated { get; set; }

    public Guid ImageUuid { get; init; }

    public Guid LastSnapshotUuid { get; init; }

    public bool IsStatic => ImageType == VdiFormat.TypeStatic;

    public long BlockMapBytes => (long)BlocksInImage * 4;

    public static VdiHeader Read(ReadOnlySpan<byte> bytes)
    {
        var h = bytes[..VdiFormat.HeaderSize];
        var diskSize = BinaryPrimitives.ReadUInt64LittleEndian(h[OffDiskSize..]);
        if (diskSize > VdiFormat.MaxDiskSize)
        {
            throw new BlockException(Errno.ENOTSUP,
                $"Unsupported VDI image size (size is 0x{diskSize:x}, max supported is 0x{VdiFormat.MaxDiskSize:x})");
        }

        // VBoxManage can make images of odd sizes; QEMU rounds them up to whole sectors.
        diskSize = (diskSize + VdiFormat.SectorSize - 1) & ~(ulong)(VdiFormat.SectorSize - 1);
        var signature = BinaryPrimitives.ReadUInt32LittleEndian(h[OffSignature..]);
        var version = BinaryPrimitives.ReadUInt32LittleEndian(h[OffVersion..]);
        var blockMap = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBlockMap..]);
        var data = BinaryPrimitives.ReadUInt32LittleEndian(h[OffData..]);
        var sectorSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffSectorSize..]);
        var blockSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBlockSize..]);
        var blocks = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBlocksInImage..]);
        if (signature != VdiFormat.Signature)
        {
            throw BlockException.Invalid($"Image not in VDI format (bad signature {signature:x8})");
        }

        var unsupported = version != VdiFormat.Version ? $"version {version >> 16}.{version & 0xffff}"
            : blockMap % VdiFormat.SectorSize != 0 ? $"unaligned block map offset 0x{blockMap:x}"
            : data % VdiFormat.SectorSize != 0 ? $"unaligned data offset 0x{data:x}"
            : sectorSize != VdiFormat.SectorSize ? $"sector size {sectorSize} is not {VdiFormat.SectorSize}"
            : blockSize != VdiFormat.BlockSize ? $"block size {blockSize} is not {VdiFormat.BlockSize}"
            : diskSize > (ulong)blocks * blockSize ? $"disk size {diskSize}, image bitmap has room for {(ulong)blocks * blockSize}"
            : h.Slice(OffUuidLink, 16).ContainsAnyExcept((byte)0) ? "non-NULL link UUID"
            : h.Slice(OffUuidParent, 16).ContainsAnyExcept((byte)0) ? "non-NULL parent UUID"
            : blocks > VdiFormat.MaxBlocks ? $"too many blocks {blocks}, max is {VdiFormat.MaxBlocks}"
            : null;
        if (unsupported is not null)
        {
            throw new BlockException(Errno.ENOTSUP, $"unsupported VDI image ({unsupported})");
        }

        return new VdiHeader
        {
            Text = System.Text.Encoding.Latin1.GetString(h.Slice(OffText, TextLength)).TrimEnd('\0'),
            HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(h[OffHeaderSize..]),
            ImageType = BinaryPrimitives.ReadUInt32LittleEndian(h[OffImageType..]),
            ImageFlags = BinaryPrimitives.ReadUInt32LittleEndian(h[OffImageFlags..]),
            BlockMapOffset = blockMap,
            DataOffset = data,
            SectorSize = sectorSize,
            DiskSize = diskSize,
            BlockSize = blockSize,
            BlocksInImage = blocks,
            BlocksAllocated = BinaryPrimitives.ReadUInt32LittleEndian(h[OffBlocksAllocated..]),
            ImageUuid = new Guid(h.Slice(OffUuidImage, 16)),
            LastSnapshotUuid = new Guid(h.Slice(OffUuidLastSnapshot, 16)),
        };
    }

    /// <summary>Encodes the header (description, geometry and link/parent UUIDs zero).</summary>
    public void Write(Span<byte> bytes)
    {
        var h = bytes[..VdiFormat.HeaderSize];
        h.Clear();
        System.Text.Encoding.Latin1.GetBytes(Text.AsSpan(0, Math.Min(Text.Length, TextLength - 1)), h.Slice(OffText, TextLength));
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffSignature..], VdiFormat.Signature);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffVersion..], VdiFormat.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffHeaderSize..], HeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffImageType..], ImageType);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffImageFlags..], ImageFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBlockMap..], BlockMapOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffData..], DataOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffSectorSize..], SectorSize);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffDiskSize..], DiskSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBlockSize..], BlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBlocksInImage..], BlocksInImage);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffBlocksAllocated..], BlocksAllocated);
        ImageUuid.TryWriteBytes(h.Slice(OffUuidImage, 16));
        LastSnapshotUuid.TryWriteBytes(h.Slice(OffUuidLastSnapshot, 16));
    }
}
