using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// One entry of the snapshot table: the snapshot's own L1 table and its identity. Entries are
/// variable length (fixed part, extra data, id, name) padded to 8 bytes; extra data is kept verbatim.
/// </summary>
public sealed record Qcow2Snapshot
{
    private const int FixedLength = 40;

    public long L1TableOffset { get; init; }

    public int L1Size { get; init; }

    public required string Id { get; init; }

    public required string Name { get; init; }

    public uint DateSeconds { get; init; }

    public uint DateNanoseconds { get; init; }

    public ulong VmClockNanoseconds { get; init; }

    public uint VmStateSize { get; init; }

    /// <summary>Extra data: vm_state_size_large (8), disk_size (8), icount (8) in current QEMU.</summary>
    internal byte[] Extra { get; init; } = [];

    /// <summary>The guest size when the snapshot was taken, from extra data; null when not recorded.</summary>
    public long? DiskSize => Extra.Length >= 16 ? (long)BinaryPrimitives.ReadUInt64BigEndian(Extra.AsSpan(8)) : null;

    internal int EncodedLength => (FixedLength + Extra.Length + Encoding.UTF8.GetByteCount(Id) + Encoding.UTF8.GetByteCount(Name) + 7) & ~7;

    /// <summary>Parses <paramref name="count"/> entries; errors name the entry and the field.</summary>
    internal static List<Qcow2Snapshot> ReadTable(ReadOnlySpan<byte> b, int count, int clusterSize, long fileLength)
    {
        var list = new List<Qcow2Snapshot>(count);
        var pos = 0;
        for (var i = 0; i < count; i++)
        {
            if (pos + FixedLength > b.Length)
            {
                throw BlockException.Invalid($"qcow2: snapshot table entry {i} truncated");
            }

            var e = b[pos..];
            var l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(e);
            var l1Size = BinaryPrimitives.ReadUInt32BigEndian(e[8..]);
            var idLen = BinaryPrimitives.ReadUInt16BigEndian(e[12..]);
            var nameLen = BinaryPrimitives.ReadUInt16BigEndian(e[14..]);
            var extraLen = BinaryPrimitives.ReadUInt32BigEndian(e[36..]);
            if (extraLen > 1024)
            {
                throw BlockException.Invalid($"qcow2: snapshot {i} extra_data_size {extraLen} too large");
            }

            var total = FixedLength + (int)extraLen + idLen + nameLen;
            if (pos + total > b.Length)
            {
                throw BlockException.Invalid($"qcow2: snapshot table entry {i} truncated");
            }

            if ((l1Offset & (clusterSize - 1)) != 0 || (long)l1Size * 8 > Qcow2Format.MaxL1Bytes ||
                l1Offset > fileLength - (long)l1Size * 8)
            {
                throw BlockException.Invalid($"qcow2: snapshot {i} l1_table_offset 0x{l1Offset:x} / l1_size {l1Size} invalid");
            }

            var p = FixedLength + (int)extraLen;
            list.Add(new Qcow2Snapshot
            {
                L1TableOffset = l1Offset,
                L1Size = (int)l1Size,
                DateSeconds = BinaryPrimitives.ReadUInt32BigEndian(e[16..]),
                DateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(e[20..]),
                VmClockNanoseconds = BinaryPrimitives.ReadUInt64BigEndian(e[24..]),
                VmStateSize = BinaryPrimitives.ReadUInt32BigEndian(e[32..]),
                Extra = e.Slice(FixedLength, (int)extraLen).ToArray(),
                Id = Encoding.UTF8.GetString(e.Slice(p, idLen)),
                Name = Encoding.UTF8.GetString(e.Slice(p + idLen, nameLen)),
            });
            pos += (total + 7) & ~7;
        }

        return list;
    }

    /// <summary>Serialises this entry at the start of <paramref name="b"/>; returns its padded length.</summary>
    internal int Write(Span<byte> b)
    {
        var len = EncodedLength;
        b[..len].Clear();
        var id = Encoding.UTF8.GetBytes(Id);
        var name = Encoding.UTF8.GetBytes(Name);
        BinaryPrimitives.WriteUInt64BigEndian(b, (ulong)L1TableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(b[8..], (uint)L1Size);
        BinaryPrimitives.WriteUInt16BigEndian(b[12..], (ushort)id.Length);
        BinaryPrimitives.WriteUInt16BigEndian(b[14..], (ushort)name.Length);
        BinaryPrimitives.WriteUInt32BigEndian(b[16..], DateSeconds);
        BinaryPrimitives.WriteUInt32BigEndian(b[20..], DateNanoseconds);
        BinaryPrimitives.WriteUInt64BigEndian(b[24..], VmClockNanoseconds);
        BinaryPrimitives.WriteUInt32BigEndian(b[32..], VmStateSize);
        BinaryPrimitives.WriteUInt32BigEndian(b[36..], (uint)Extra.Length);
        Extra.CopyTo(b[FixedLength..]);
        id.CopyTo(b[(FixedLength + Extra.Length)..]);
        name.CopyTo(b[(FixedLength + Extra.Length + id.Length)..]);
        return len;
    }
}
