using System.Buffers.Binary;
using System.Numerics;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// The 1024-byte dynamic disk header (big-endian) that the footer of a dynamic disk points to: the
/// block allocation table's offset and length and the block size. <see cref="Read"/> checks the
/// cookie, the checksum and the block size.
/// </summary>
internal sealed record VpcDynamicHeader
{
    private const int OffCookie = 0;
    private const int OffDataOffset = 8;
    private const int OffTableOffset = 16;
    private const int OffVersion = 24;
    private const int OffMaxTableEntries = 28;
    private const int OffBlockSize = 32;
    internal const int OffChecksum = 36;
    private const int OffParentName = 64;
    private const int ParentNameBytes = 512;

    /// <summary>Unused by QEMU and Virtual PC; QEMU writes all ones.</summary>
    public ulong DataOffset { get; init; } = ulong.MaxValue;

    public ulong TableOffset { get; init; } = VpcFormat.CreatedTableOffset;

    public uint Version { get; init; } = 0x00010000;

    public uint MaxTableEntries { get; init; }

    public uint BlockSize { get; init; } = VpcFormat.DefaultBlockSize;

    /// <summary>A differencing disk's parent as its header names it (UTF-16 big-endian, up to the first NUL); empty otherwise.</summary>
    public string ParentName { get; init; } = string.Empty;

    /// <summary>Bytes of the sector bitmap in front of each block: one bit per sector, in whole sectors.</summary>
    public int BitmapSize => (int)(((BlockSize / (8 * VpcFormat.SectorSize)) + 511) & ~511u);

    public static VpcDynamicHeader Read(ReadOnlySpan<byte> bytes)
    {
        var header = bytes[..VpcFormat.DynamicHeaderSize];
        if (!header[..8].SequenceEqual(VpcFormat.DynamicCookie))
        {
            throw BlockException.Invalid("Invalid header magic (dynamic disk header cookie is not 'cxsparse')");
        }

        var stored = BinaryPrimitives.ReadUInt32BigEndian(header[OffChecksum..]);
        var computed = VpcFormat.Checksum(header, OffChecksum);
        if (stored != computed)
        {
            throw BlockException.Invalid($"Incorrect dynamic disk header checksum (checksum 0x{stored:x8}, computed 0x{computed:x8})");
        }

        var blockSize = BinaryPrimitives.ReadUInt32BigEndian(header[OffBlockSize..]);
        if (!BitOperations.IsPow2(blockSize) || blockSize < VpcFormat.SectorSize)
        {
            throw BlockException.Invalid($"Invalid block size {blockSize}");
        }

        return new VpcDynamicHeader
        {
            DataOffset = BinaryPrimitives.ReadUInt64BigEndian(header[OffDataOffset..]),
            TableOffset = BinaryPrimitives.ReadUInt64BigEndian(header[OffTableOffset..]),
            Version = BinaryPrimitives.ReadUInt32BigEndian(header[OffVersion..]),
            MaxTableEntries = BinaryPrimitives.ReadUInt32BigEndian(header[OffMaxTableEntries..]),
            BlockSize = blockSize,
            ParentName = ReadParentName(header.Slice(OffParentName, ParentNameBytes)),
        };
    }

    private static string ReadParentName(ReadOnlySpan<byte> field)
    {
        var units = 0;
        while (units * 2 < field.Length && (field[units * 2] | field[(units * 2) + 1]) != 0)
        {
            units++;
        }

        return System.Text.Encoding.BigEndianUnicode.GetString(field[..(units * 2)]);
    }

    /// <summary>Encodes the header into 1024 bytes (no parent: the parent fields stay zero) with its checksum.</summary>
    public void Write(Span<byte> bytes)
    {
        var header = bytes[..VpcFormat.DynamicHeaderSize];
        header.Clear();
        VpcFormat.DynamicCookie.CopyTo(header[OffCookie..]);
        BinaryPrimitives.WriteUInt64BigEndian(header[OffDataOffset..], DataOffset);
        BinaryPrimitives.WriteUInt64BigEndian(header[OffTableOffset..], TableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(header[OffVersion..], Version);
        BinaryPrimitives.WriteUInt32BigEndian(header[OffMaxTableEntries..], MaxTableEntries);
        BinaryPrimitives.WriteUInt32BigEndian(header[OffBlockSize..], BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(header[OffChecksum..], VpcFormat.Checksum(header, OffChecksum));
    }
}
