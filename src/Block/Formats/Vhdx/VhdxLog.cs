using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The metadata log: a circular buffer of entries, each a 4 KiB-multiple run of a header with
/// descriptors, then one 4 KiB data sector per data descriptor. Replay finds the valid entry with
/// the highest sequence number and applies the sequence that ends with it, from the entry its tail
/// names, in order. Our own entries each form a sequence of one (the tail is the entry itself),
/// because every earlier entry has reached its place in the file before the next one is written.
/// </summary>
internal static class VhdxLog
{
    private const int EntryHeaderSize = 64;
    private const int DescriptorSize = 32;
    private const int Sector = VhdxFormat.LogSectorSize;

    /// <summary>One change the log makes to the file: <paramref name="Data"/> written, or (null) <paramref name="Length"/> zero bytes.</summary>
    public readonly record struct Change(long Offset, long Length, byte[]? Data);

    /// <summary>An entry found valid in the log.</summary>
    private sealed record Entry(long Position, uint Length, uint Tail, ulong Sequence, long LastFileOffset, List<Change> Changes);

    /// <summary>
    /// The changes to replay from <paramref name="log"/> (the whole log region) for <paramref name="logGuid"/>,
    /// in order, and the file length the log asks for; none when no entry is valid. A change aimed at the
    /// header section or <paramref name="protectedRanges"/> (the log itself) is refused.
    /// </summary>
    public static (List<Change> Changes, long LastFileOffset) Replay(byte[] log, Guid logGuid, IReadOnlyList<(long Start, long Length)> protectedRanges)
    {
        var entries = new Dictionary<long, Entry>();
        for (long p = 0; p < log.Length; p += Sector)
        {
            if (TryReadEntry(log, p, logGuid, out var e))
            {
                entries[p] = e!;
            }
        }

        if (entries.Count == 0)
        {
            return ([], 0);
        }

        var head = entries.Values.MaxBy(e => e.Sequence)!;
        var sequence = new List<Entry>();
        var position = (long)head.Tail;
        for (var guard = 0; guard <= entries.Count; guard++)
        {
            if (!entries.TryGetValue(position, out var e) || (sequence.Count > 0 && e.Sequence != sequence[^1].Sequence + 1))
            {
                throw BlockException.Invalid(
                    $"vhdx: log is corrupt: the sequence ending at entry {head.Sequence} (tail 0x{head.Tail:x}) is broken at log offset 0x{position:x}");
            }

            sequence.Add(e);
            if (ReferenceEquals(e, head))
            {
                break;
            }

            position = (position + e.Length) % log.Length;
        }

        if (!ReferenceEquals(sequence[^1], head))
        {
            throw BlockException.Invalid("vhdx: log is corrupt: its sequence loops");
        }

        var changes = sequence.SelectMany(e => e.Changes).ToList();
        foreach (var c in changes)
        {
            if (c.Offset < VhdxFormat.HeaderSectionEnd || protectedRanges.Any(r => c.Offset < r.Start + r.Length && r.Start < c.Offset + c.Length))
            {
                throw BlockException.Invalid($"vhdx: log entry writes to offset 0x{c.Offset:x}, inside the header section or the log");
            }
        }

        return (changes, head.LastFileOffset);
    }

    /// <summary>Reads <paramref name="length"/> bytes of the circular log from <paramref name="position"/>.</summary>
    private static byte[] Slice(byte[] log, long position, long length)
    {
        var bytes = new byte[length];
        for (long i = 0; i < length;)
        {
            var at = (position + i) % log.Length;
            var n = (int)Math.Min(length - i, log.Length - at);
            Array.Copy(log, at, bytes, i, n);
            i += n;
        }

        return bytes;
    }

    private static bool TryReadEntry(byte[] log, long position, Guid logGuid, out Entry? entry)
    {
        entry = null;
        var first = log.AsSpan((int)position, Sector);
        if (BinaryPrimitives.ReadUInt32LittleEndian(first) != VhdxFormat.LogEntrySignature)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32LittleEndian(first[8..]);
        var tail = BinaryPrimitives.ReadUInt32LittleEndian(first[12..]);
        var sequence = BinaryPrimitives.ReadUInt64LittleEndian(first[16..]);
        var descriptors = BinaryPrimitives.ReadUInt32LittleEndian(first[24..]);
        if (length == 0 || length % Sector != 0 || length > log.Length || tail % Sector != 0 || tail >= log.Length || sequence == 0 ||
            new Guid(first.Slice(32, 16)) != logGuid ||
            (long)descriptors * DescriptorSize > length)
        {
            return false;
        }

        var bytes = Slice(log, position, length);
        if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)) != VhdxFormat.Checksum(bytes, 4))
        {
            return false;
        }

        var headerSectors = (EntryHeaderSize + ((long)descriptors * DescriptorSize) + Sector - 1) / Sector;
        var dataSector = headerSectors;
        var changes = new List<Change>();
        for (var i = 0; i < descriptors; i++)
        {
            var d = bytes.AsSpan(EntryHeaderSize + (i * DescriptorSize), DescriptorSize);
            var signature = BinaryPrimitives.ReadUInt32LittleEndian(d);
            var fileOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(d[16..]);
            if (BinaryPrimitives.ReadUInt64LittleEndian(d[24..]) != sequence || fileOffset < 0 || fileOffset % Sector != 0)
            {
                return false;
            }

            if (signature == VhdxFormat.ZeroDescriptorSignature)
            {
                var zeroLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(d[8..]);
                if (zeroLength <= 0 || zeroLength % Sector != 0 || zeroLength > VhdxFormat.MaxImageSize)
                {
                    return false;
                }

                changes.Add(new Change(fileOffset, zeroLength, null));
                continue;
            }

            if (signature != VhdxFormat.DataDescriptorSignature || (dataSector + 1) * Sector > length)
            {
                return false;
            }

            var s = bytes.AsSpan((int)(dataSector * Sector), Sector);
            if (BinaryPrimitives.ReadUInt32LittleEndian(s) != VhdxFormat.DataSectorSignature ||
                BinaryPrimitives.ReadUInt32LittleEndian(s[4..]) != (uint)(sequence >> 32) ||
                BinaryPrimitives.ReadUInt32LittleEndian(s[4092..]) != (uint)sequence)
            {
                return false;
            }

            var data = s.ToArray();
            d.Slice(8, 8).CopyTo(data);            // leading bytes
            d.Slice(4, 4).CopyTo(data.AsSpan(4092)); // trailing bytes
            changes.Add(new Change(fileOffset, Sector, data));
            dataSector++;
        }

        entry = new Entry(position, length, tail, sequence, (long)BinaryPrimitives.ReadUInt64LittleEndian(first[56..]), changes);
        return true;
    }

    /// <summary>
    /// A log entry of one data descriptor per sector of <paramref name="sectors"/> (each 4 KiB, written at
    /// its file offset): a sequence of its own (its tail is <paramref name="position"/>, where it goes in
    /// the log), so the sectors reach the file together or not at all.
    /// </summary>
    public static byte[] Build(ulong sequence, Guid logGuid, long position, IReadOnlyList<(long FileOffset, byte[] Sector)> sectors, long fileLength)
    {
        var headerSectors = (EntryHeaderSize + (sectors.Count * DescriptorSize) + Sector - 1) / Sector;
        var entry = new byte[(headerSectors + sectors.Count) * Sector];
        var h = entry.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(h, VhdxFormat.LogEntrySignature);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], (uint)entry.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], (uint)position);
        BinaryPrimitives.WriteUInt64LittleEndian(h[16..], sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(h[24..], (uint)sectors.Count);
        logGuid.TryWriteBytes(h.Slice(32, 16));
        BinaryPrimitives.WriteUInt64LittleEndian(h[48..], (ulong)fileLength);
        BinaryPrimitives.WriteUInt64LittleEndian(h[56..], (ulong)fileLength);

        for (var i = 0; i < sectors.Count; i++)
        {
            var (fileOffset, sector) = sectors[i];
            var d = h.Slice(EntryHeaderSize + (i * DescriptorSize), DescriptorSize);
            BinaryPrimitives.WriteUInt32LittleEndian(d, VhdxFormat.DataDescriptorSignature);
            sector.AsSpan(4092, 4).CopyTo(d[4..]);
            sector.AsSpan(0, 8).CopyTo(d[8..]);
            BinaryPrimitives.WriteUInt64LittleEndian(d[16..], (ulong)fileOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(d[24..], sequence);

            var s = h.Slice((headerSectors + i) * Sector, Sector);
            sector.AsSpan(0, Sector).CopyTo(s);
            BinaryPrimitives.WriteUInt32LittleEndian(s, VhdxFormat.DataSectorSignature);
            BinaryPrimitives.WriteUInt32LittleEndian(s[4..], (uint)(sequence >> 32));
            BinaryPrimitives.WriteUInt32LittleEndian(s[4092..], (uint)sequence);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], VhdxFormat.Checksum(entry, 4));
        return entry;
    }
}
