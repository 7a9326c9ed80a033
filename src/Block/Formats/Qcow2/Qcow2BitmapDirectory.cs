using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The persistent bitmap directory: validated on open as QEMU's bitmap_list_load and
/// check_dir_entry do (with their texts), so an image QEMU refuses is refused here too; read into
/// entries and written back from them.
/// </summary>
internal static class Qcow2BitmapDirectory
{
    // Entry layout: bitmap table offset (8), table size (4), flags (4), type (1),
    // granularity bits (1), name size (2), extra data size (4); then extra data and name, padded to 8.
    private const int EntryHeaderLength = 24;
    private const int OffTableOffset = 0;
    private const int OffTableSize = 8;
    private const int OffFlags = 12;
    private const int OffType = 16;
    private const int OffGranularityBits = 17;
    private const int OffNameSize = 18;
    private const int OffExtraDataSize = 20;

    // QEMU's BME_* limits.
    private const uint MaxTableSize = 0x8000000;
    private const ulong MaxPhysicalSize = 0x20000000;
    private const int MinGranularityBits = 9;
    private const int MaxGranularityBits = 31;
    private const int MaxNameSize = 1023;
    public const uint FlagInUse = 1;
    public const uint FlagAuto = 2;
    private const byte TypeDirtyTracking = 1;

    /// <summary>Reads the directory the header's bitmaps extension points to; empty without one.</summary>
    public static async ValueTask<List<Qcow2BitmapEntry>> ReadAsync(BlockNode file, Qcow2Header header)
    {
        if (header.BitmapCount == 0)
        {
            return [];
        }

        var dir = new byte[header.BitmapDirectorySize];
        await file.ReadAsync(header.BitmapDirectoryOffset, dir).ConfigureAwait(false);
        return Parse(dir);
    }

    /// <summary>The entries of a directory already checked by <see cref="Validate"/>, in file order.</summary>
    public static List<Qcow2BitmapEntry> Parse(ReadOnlySpan<byte> dir)
    {
        var list = new List<Qcow2BitmapEntry>();
        var pos = 0;
        while (pos < dir.Length)
        {
            var e = dir[pos..];
            var nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[OffNameSize..]);
            var extra = (int)BinaryPrimitives.ReadUInt32BigEndian(e[OffExtraDataSize..]);
            list.Add(new Qcow2BitmapEntry(
                (long)BinaryPrimitives.ReadUInt64BigEndian(e[OffTableOffset..]),
                (int)BinaryPrimitives.ReadUInt32BigEndian(e[OffTableSize..]),
                BinaryPrimitives.ReadUInt32BigEndian(e[OffFlags..]),
                e[OffGranularityBits],
                Encoding.UTF8.GetString(e.Slice(EntryHeaderLength + extra, nameSize))));
            pos += EntryLength(nameSize, extra);
        }

        return list;
    }

    /// <summary>The directory bytes for <paramref name="entries"/>, each entry padded to 8 bytes.</summary>
    public static byte[] Encode(IReadOnlyList<Qcow2BitmapEntry> entries)
    {
        var names = entries.Select(e => Encoding.UTF8.GetBytes(e.Name)).ToArray();
        var dir = new byte[names.Sum(n => EntryLength(n.Length, 0))];
        var pos = 0;
        for (var i = 0; i < entries.Count; i++)
        {
            var e = dir.AsSpan(pos);
            var entry = entries[i];
            BinaryPrimitives.WriteUInt64BigEndian(e[OffTableOffset..], (ulong)entry.TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[OffTableSize..], (uint)entry.TableSize);
            BinaryPrimitives.WriteUInt32BigEndian(e[OffFlags..], entry.Flags);
            e[OffType] = TypeDirtyTracking;
            e[OffGranularityBits] = (byte)entry.GranularityBits;
            BinaryPrimitives.WriteUInt16BigEndian(e[OffNameSize..], (ushort)names[i].Length);
            names[i].CopyTo(e[EntryHeaderLength..]);
            pos += EntryLength(names[i].Length, 0);
        }

        return dir;
    }

    /// <summary>Bytes an entry takes in the directory (QEMU's calc_dir_entry_size).</summary>
    public static int EntryLength(int nameSize, int extraSize) => (EntryHeaderLength + extraSize + nameSize + 7) & ~7;

    /// <summary>
    /// QEMU's check_constraints_on_bitmap for a bitmap about to be stored: name length, granularity,
    /// and the size of its table and data for an image of <paramref name="virtualSize"/> bytes.
    /// </summary>
    public static string? ConstraintViolation(string name, long granularity, int clusterSize, long virtualSize)
    {
        var bits = System.Numerics.BitOperations.Log2((ulong)granularity);
        if (Encoding.UTF8.GetByteCount(name) > MaxNameSize)
        {
            return $"Name length exceeds maximum ({MaxNameSize} characters)";
        }

        if (bits > MaxGranularityBits)
        {
            return $"Granularity exceeds maximum ({1L << MaxGranularityBits} bytes)";
        }

        if (bits < MinGranularityBits)
        {
            return $"Granularity is under minimum ({1L << MinGranularityBits} bytes)";
        }

        if ((ulong)virtualSize > MaxPhysicalSize << bits || (ulong)virtualSize > ((ulong)MaxTableSize * (ulong)clusterSize) << bits)
        {
            return "Too much space will be occupied by the bitmap. Use larger granularity";
        }

        return null;
    }

    /// <summary>Reads and checks the directory the header's bitmaps extension points to, if it has one.</summary>
    public static async ValueTask ValidateAsync(BlockNode file, Qcow2Header header)
    {
        if (header.BitmapCount == 0)
        {
            return;
        }

        // Past the end of the file the directory reads as zeroes, as in QEMU (and then fails the checks).
        var dir = new byte[header.BitmapDirectorySize];
        var n = (int)Math.Clamp(file.Length - header.BitmapDirectoryOffset, 0, dir.Length);
        if (n > 0)
        {
            await file.ReadAsync(header.BitmapDirectoryOffset, dir.AsMemory(0, n)).ConfigureAwait(false);
        }

        Validate(dir, header.BitmapCount, header.ClusterSize, header.Size, what => $"qcow2 image '{file.FileName}': {what}");
    }

    /// <summary>Checks a directory of <paramref name="count"/> entries for an image of <paramref name="virtualSize"/> bytes.</summary>
    public static void Validate(ReadOnlySpan<byte> dir, int count, int clusterSize, long virtualSize, Func<string, string> where)
    {
        BlockException Bad(string what) => BlockException.Invalid(where(what));
        if (dir.Length == 0)
        {
            throw Bad("Requested bitmap directory size is zero");
        }

        var pos = 0;
        var found = 0;
        while (pos < dir.Length)
        {
            if (dir.Length - pos < EntryHeaderLength)
            {
                throw Bad("Broken bitmap directory");
            }

            if (++found > count)
            {
                throw Bad("More bitmaps found than specified in header extension");
            }

            var e = dir[pos..];
            var nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[OffNameSize..]);
            var extra = BinaryPrimitives.ReadUInt32BigEndian(e[OffExtraDataSize..]);
            var length = ((long)EntryHeaderLength + extra + nameSize + 7) & ~7L;
            if (length > dir.Length - pos)
            {
                throw Bad("Broken bitmap directory");
            }

            if (extra != 0)
            {
                throw Bad("Bitmap extra data is not supported");
            }

            if (!EntrySatisfiesConstraints(e, clusterSize, virtualSize))
            {
                var name = Encoding.UTF8.GetString(e.Slice(EntryHeaderLength, nameSize));
                throw Bad($"Bitmap '{name}' doesn't satisfy the constraints");
            }

            pos += (int)length;
        }

        if (found != count)
        {
            throw Bad("Less bitmaps found than specified in header extension");
        }
    }

    /// <summary>QEMU's check_dir_entry: table placement and size, granularity, flags, name and type, and room for the whole image.</summary>
    private static bool EntrySatisfiesConstraints(ReadOnlySpan<byte> e, int clusterSize, long virtualSize)
    {
        var tableOffset = BinaryPrimitives.ReadUInt64BigEndian(e[OffTableOffset..]);
        var tableSize = BinaryPrimitives.ReadUInt32BigEndian(e[OffTableSize..]);
        var flags = BinaryPrimitives.ReadUInt32BigEndian(e[OffFlags..]);
        var granularity = e[OffGranularityBits];
        var nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[OffNameSize..]);
        if (tableSize == 0 || tableOffset == 0 || tableOffset % (ulong)clusterSize != 0 || tableSize > MaxTableSize
            || granularity is > MaxGranularityBits or < MinGranularityBits || (flags & ~(FlagInUse | FlagAuto)) != 0
            || nameSize > MaxNameSize || e[OffType] != TypeDirtyTracking)
        {
            return false;
        }

        var physicalBytes = (ulong)tableSize * (ulong)clusterSize;
        if (physicalBytes > MaxPhysicalSize)
        {
            return false;
        }

        // A bitmap not marked in use must cover the whole image.
        return (flags & FlagInUse) != 0 || (ulong)virtualSize <= (physicalBytes * 8) << granularity;
    }
}
