using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The bitmaps header extension: checked on open as QEMU's qcow2_read_extensions checks it (its
/// length, reserved field, bitmap count and directory placement, with QEMU's texts) when the
/// autoclear bitmaps bit says the bitmaps are current; without the bit it is ignored.
/// </summary>
internal sealed partial class Qcow2Header
{
    /// <summary>QEMU's QCOW2_MAX_BITMAPS and QCOW2_MAX_BITMAP_DIRECTORY_SIZE.</summary>
    public const int MaxBitmaps = 65535;
    public const long MaxBitmapDirectorySize = 1024L * MaxBitmaps;

    // Extension layout: nb_bitmaps (4), reserved (4), directory size (8), directory offset (8).
    private const int BitmapsExtLength = 24;
    private const int OffExtNbBitmaps = 0;
    private const int OffExtReserved = 4;
    private const int OffExtDirectorySize = 8;
    private const int OffExtDirectoryOffset = 16;

    /// <summary>Bitmaps the extension announces; 0 without a current bitmaps extension.</summary>
    public int BitmapCount { get; private set; }

    public long BitmapDirectorySize { get; private set; }

    public long BitmapDirectoryOffset { get; private set; }

    private void ReadBitmapsExtension(Func<string, string> where)
    {
        var ext = Extensions.Find(x => x.Type == Qcow2Format.ExtBitmaps);
        if (ext is null || (AutoclearFeatures & Qcow2Format.AutoclearBitmaps) == 0)
        {
            // Without the autoclear bit a program unaware of bitmaps has written the image: QEMU
            // ignores the extension (and drops it on its next header update), so it is not checked.
            return;
        }

        BlockException Bad(string what) => BlockException.Invalid(where(what));
        var d = ext.Data.AsSpan();
        if (d.Length != BitmapsExtLength)
        {
            throw Bad("bitmaps_ext: Invalid extension length");
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(d[OffExtReserved..]) != 0)
        {
            throw Bad("bitmaps_ext: Reserved field is not zero");
        }

        var count = BinaryPrimitives.ReadUInt32BigEndian(d[OffExtNbBitmaps..]);
        var size = BinaryPrimitives.ReadUInt64BigEndian(d[OffExtDirectorySize..]);
        var offset = BinaryPrimitives.ReadUInt64BigEndian(d[OffExtDirectoryOffset..]);
        if (count > MaxBitmaps)
        {
            throw Bad($"bitmaps_ext: Image has {count} bitmaps, exceeding the QEMU supported maximum of {MaxBitmaps}");
        }

        if (count == 0)
        {
            throw Bad("found bitmaps extension with zero bitmaps");
        }

        if ((offset & (ulong)(ClusterSize - 1)) != 0)
        {
            throw Bad("bitmaps_ext: invalid bitmap directory offset");
        }

        if (size > MaxBitmapDirectorySize)
        {
            throw Bad($"bitmaps_ext: bitmap directory size ({size}) exceeds the maximum supported size ({MaxBitmapDirectorySize})");
        }

        if (offset > long.MaxValue)
        {
            throw Bad("bitmaps_ext: invalid bitmap directory offset");
        }

        BitmapCount = (int)count;
        BitmapDirectorySize = (long)size;
        BitmapDirectoryOffset = (long)offset;
    }

    /// <summary>Whether the header carries a bitmaps extension that a program unaware of bitmaps made stale (autoclear bit clear).</summary>
    public bool HasStaleBitmapsExtension =>
        (AutoclearFeatures & Qcow2Format.AutoclearBitmaps) == 0 && Extensions.Exists(x => x.Type == Qcow2Format.ExtBitmaps);

    /// <summary>
    /// Points the bitmaps extension at a directory of <paramref name="count"/> entries and sets the
    /// autoclear bit; with no bitmaps, drops the extension and clears the bit.
    /// </summary>
    public void SetBitmapDirectory(int count, long size, long offset)
    {
        Extensions.RemoveAll(x => x.Type == Qcow2Format.ExtBitmaps);
        BitmapCount = count;
        BitmapDirectorySize = count == 0 ? 0 : size;
        BitmapDirectoryOffset = count == 0 ? 0 : offset;
        if (count == 0)
        {
            AutoclearFeatures &= ~Qcow2Format.AutoclearBitmaps;
            return;
        }

        var data = new byte[BitmapsExtLength];
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(OffExtNbBitmaps), (uint)count);
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(OffExtDirectorySize), (ulong)size);
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(OffExtDirectoryOffset), (ulong)offset);
        Extensions.Add(new Qcow2HeaderExtension(Qcow2Format.ExtBitmaps, data));
        AutoclearFeatures |= Qcow2Format.AutoclearBitmaps;
    }
}
