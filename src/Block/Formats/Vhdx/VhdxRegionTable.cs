using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The region table (64 KiB, checksummed): where the BAT and the metadata region lie. Both are
/// required; another region marked required is refused, as the format demands.
/// </summary>
internal sealed record VhdxRegionTable
{
    private const int OffSignature = 0;
    private const int OffChecksum = 4;
    private const int OffEntryCount = 8;
    private const int EntriesStart = 16;
    private const int EntrySize = 32;
    private const uint RequiredBit = 1;

    public required (long Offset, uint Length) Bat { get; init; }

    public required (long Offset, uint Length) Metadata { get; init; }

    public static VhdxRegionTable Read(ReadOnlySpan<byte> block, long fileLength)
    {
        var t = block[..VhdxFormat.HeaderBlockSize];
        if (BinaryPrimitives.ReadUInt32LittleEndian(t[OffSignature..]) != VhdxFormat.RegionSignature)
        {
            throw BlockException.Invalid("vhdx: region table signature is not 'regi'");
        }

        var stored = BinaryPrimitives.ReadUInt32LittleEndian(t[OffChecksum..]);
        var computed = VhdxFormat.Checksum(t, OffChecksum);
        if (stored != computed)
        {
            throw BlockException.Invalid($"vhdx: region table checksum 0x{stored:x8} does not match its contents (0x{computed:x8})");
        }

        var count = BinaryPrimitives.ReadUInt32LittleEndian(t[OffEntryCount..]);
        if (count > VhdxFormat.MaxTableEntries)
        {
            throw BlockException.Invalid($"vhdx: region table entry count {count} is above the maximum of {VhdxFormat.MaxTableEntries}");
        }

        (long, uint)? bat = null, metadata = null;
        for (var i = 0; i < (int)count; i++)
        {
            var e = t.Slice(EntriesStart + (i * EntrySize), EntrySize);
            var guid = new Guid(e[..16]);
            var offset = BinaryPrimitives.ReadUInt64LittleEndian(e[16..]);
            var length = BinaryPrimitives.ReadUInt32LittleEndian(e[24..]);
            var bits = BinaryPrimitives.ReadUInt32LittleEndian(e[28..]);
            if (guid == VhdxFormat.BatRegion || guid == VhdxFormat.MetadataRegion)
            {
                var name = guid == VhdxFormat.BatRegion ? "BAT" : "metadata";
                if ((guid == VhdxFormat.BatRegion ? bat : metadata) is not null)
                {
                    throw BlockException.Invalid($"vhdx: region table lists the {name} region twice");
                }

                if (offset < VhdxFormat.HeaderSectionEnd || offset % VhdxFormat.MiB != 0 || offset > (ulong)fileLength || length > fileLength - (long)offset)
                {
                    throw BlockException.Invalid($"vhdx: {name} region (offset 0x{offset:x}, length {length}) is not inside the file past its header section");
                }

                if (guid == VhdxFormat.BatRegion)
                {
                    bat = ((long)offset, length);
                }
                else
                {
                    metadata = ((long)offset, length);
                }
            }
            else if ((bits & RequiredBit) != 0)
            {
                throw BlockException.NotSupported($"vhdx: region {guid} is required and not known to this driver");
            }
        }

        if (bat is null || metadata is null)
        {
            throw BlockException.Invalid($"vhdx: region table has no {(bat is null ? "BAT" : "metadata")} region");
        }

        var (b, m) = (bat.Value, metadata.Value);
        if (b.Item1 < m.Item1 + m.Item2 && m.Item1 < b.Item1 + b.Item2)
        {
            throw BlockException.Invalid("vhdx: the BAT and metadata regions overlap");
        }

        return new VhdxRegionTable { Bat = b, Metadata = m };
    }

    /// <summary>Encodes a table of the two regions into a 64 KiB block with its checksum.</summary>
    public void Write(Span<byte> block)
    {
        var t = block[..VhdxFormat.HeaderBlockSize];
        t.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(t[OffSignature..], VhdxFormat.RegionSignature);
        BinaryPrimitives.WriteUInt32LittleEndian(t[OffEntryCount..], 2);
        var i = 0;
        foreach (var (guid, (offset, length)) in new[] { (VhdxFormat.BatRegion, Bat), (VhdxFormat.MetadataRegion, Metadata) })
        {
            var e = t.Slice(EntriesStart + (i++ * EntrySize), EntrySize);
            guid.TryWriteBytes(e[..16]);
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], (ulong)offset);
            BinaryPrimitives.WriteUInt32LittleEndian(e[24..], length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[28..], RequiredBit);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(t[OffChecksum..], VhdxFormat.Checksum(t, OffChecksum));
    }
}
