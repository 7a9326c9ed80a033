using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The qcow2 header (first cluster): fixed fields, header extensions (all kept, unknown ones
/// verbatim, in their order) and the backing file name. <see cref="Read"/> validates every field
/// against the format's and QEMU's limits and names the field in its error.
/// </summary>
internal sealed partial class Qcow2Header
{
    // Field offsets.
    private const int OffMagic = 0;
    private const int OffVersion = 4;
    private const int OffBackingFileOffset = 8;
    private const int OffBackingFileSize = 16;
    private const int OffClusterBits = 20;
    internal const int OffSize = 24;
    private const int OffCryptMethod = 32;
    internal const int OffL1Size = 36;
    internal const int OffL1TableOffset = 40;
    internal const int OffRefcountTableOffset = 48;
    private const int OffRefcountTableClusters = 56;
    internal const int OffNbSnapshots = 60;
    private const int OffSnapshotsOffset = 64;
    internal const int OffIncompatibleFeatures = 72;
    private const int OffCompatibleFeatures = 80;
    private const int OffAutoclearFeatures = 88;
    private const int OffRefcountOrder = 96;
    private const int OffHeaderLength = 100;
    private const int OffCompressionType = 104;

    /// <summary>The fixed part of a snapshot table entry (QEMU's QCowSnapshotHeader).</summary>
    private const int SnapshotHeaderLength = 40;

    public int Version { get; set; } = 3;

    public int ClusterBits { get; set; } = 16;

    public long Size { get; set; }

    public uint CryptMethod { get; set; }

    public int L1Size { get; set; }

    public long L1TableOffset { get; set; }

    public long RefcountTableOffset { get; set; }

    public int RefcountTableClusters { get; set; }

    public int SnapshotCount { get; set; }

    public long SnapshotsOffset { get; set; }

    public ulong IncompatibleFeatures { get; set; }

    public ulong CompatibleFeatures { get; set; }

    public ulong AutoclearFeatures { get; set; }

    public int RefcountOrder { get; set; } = 4;

    public int HeaderLength { get; set; } = Qcow2Format.V3HeaderLengthWithCompression;

    public byte CompressionType { get; set; }

    public string? BackingFile { get; set; }

    /// <summary>Every header extension but the end marker, in file order.</summary>
    public List<Qcow2HeaderExtension> Extensions { get; } = new();

    public int ClusterSize => 1 << ClusterBits;

    public bool ExtendedL2 => (IncompatibleFeatures & Qcow2Format.IncompatExtendedL2) != 0;

    public bool HasDataFile => (IncompatibleFeatures & Qcow2Format.IncompatDataFile) != 0;

    public bool DataFileRaw => (AutoclearFeatures & Qcow2Format.AutoclearDataFileRaw) != 0;

    public bool IsDirty => (IncompatibleFeatures & Qcow2Format.IncompatDirty) != 0;

    public bool IsCorrupt => (IncompatibleFeatures & Qcow2Format.IncompatCorrupt) != 0;

    public bool LazyRefcounts => (CompatibleFeatures & Qcow2Format.CompatLazyRefcounts) != 0;

    /// <summary>Bytes per L2 entry: 8, or 16 with extended L2 (entry + subcluster bitmap).</summary>
    public int L2EntrySize => ExtendedL2 ? 16 : 8;

    /// <summary>log2 of the number of L2 entries in one L2 table (one cluster).</summary>
    public int L2Bits => ClusterBits - (ExtendedL2 ? 4 : 3);

    /// <summary>Where the LUKS header of an image with crypt method 2 lies (the crypto header extension), or null.</summary>
    public (long Offset, long Length)? CryptoHeader
    {
        get
        {
            var e = Extensions.Find(x => x.Type == Qcow2Format.ExtCrypto);
            return e is { Data.Length: 16 }
                ? ((long)BinaryPrimitives.ReadUInt64BigEndian(e.Data), (long)BinaryPrimitives.ReadUInt64BigEndian(e.Data.AsSpan(8)))
                : null;
        }

        set
        {
            Extensions.RemoveAll(x => x.Type == Qcow2Format.ExtCrypto);
            if (value is { } v)
            {
                var data = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(data, (ulong)v.Offset);
                BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(8), (ulong)v.Length);
                Extensions.Add(new Qcow2HeaderExtension(Qcow2Format.ExtCrypto, data));
            }
        }
    }

    public string? BackingFormat
    {
        get => GetExtensionString(Qcow2Format.ExtBackingFormat);
        set => SetExtensionString(Qcow2Format.ExtBackingFormat, value);
    }

    public string? DataFile
    {
        get => GetExtensionString(Qcow2Format.ExtDataFile);
        set => SetExtensionString(Qcow2Format.ExtDataFile, value);
    }

    private string? GetExtensionString(uint type)
    {
        var e = Extensions.Find(x => x.Type == type);
        return e is null ? null : Encoding.UTF8.GetString(e.Data).TrimEnd('\0');
    }

    private void SetExtensionString(uint type, string? value)
    {
        var i = Extensions.FindIndex(x => x.Type == type);
        if (value is null)
        {
            if (i >= 0)
            {
                Extensions.RemoveAt(i);
            }

            return;
        }

        var e = new Qcow2HeaderExtension(type, Encoding.UTF8.GetBytes(value));
        if (i >= 0)
        {
            Extensions[i] = e;
        }
        else
        {
            // QEMU writes the backing format first; order of the others is kept.
            Extensions.Insert(type == Qcow2Format.ExtBackingFormat ? 0 : Extensions.Count, e);
        }
    }

    /// <summary>Number of L1 entries needed to map <paramref name="size"/> guest bytes.</summary>
    public static long L1EntriesFor(long size, int clusterBits, bool extendedL2)
    {
        var l2Bits = clusterBits - (extendedL2 ? 4 : 3);
        var shift = clusterBits + l2Bits;
        return (long)(((ulong)size + (1UL << shift) - 1) >> shift);
    }

    /// <summary>
    /// Parses and validates the header from the start of the image (at least one cluster, or the
    /// whole file when shorter). <paramref name="fileLength"/> bounds the tables it points to.
    /// </summary>
    public static Qcow2Header Read(ReadOnlySpan<byte> b, long fileLength, string fileName)
    {
        string Where(string what) => $"qcow2 image '{fileName}': {what}";
        BlockException Bad(string what) => BlockException.Invalid(Where(what));

        if (b.Length < Qcow2Format.V2HeaderLength)
        {
            throw Bad($"header truncated ({b.Length} bytes, at least {Qcow2Format.V2HeaderLength} needed)");
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(b[OffMagic..]) != Qcow2Format.Magic)
        {
            throw Bad("magic is not 'QFI\\xfb'");
        }

        var h = new Qcow2Header();
        var version = BinaryPrimitives.ReadUInt32BigEndian(b[OffVersion..]);
        if (version is not (2 or 3))
        {
            throw BlockException.NotSupported(Where($"unsupported version {version}"));
        }

        h.Version = (int)version;
        var clusterBits = BinaryPrimitives.ReadUInt32BigEndian(b[OffClusterBits..]);
        if (clusterBits is < Qcow2Format.MinClusterBits or > Qcow2Format.MaxClusterBits)
        {
            throw Bad($"cluster_bits {clusterBits} out of range [{Qcow2Format.MinClusterBits}, {Qcow2Format.MaxClusterBits}]");
        }

        h.ClusterBits = (int)clusterBits;
        var cs = h.ClusterSize;
        if (h.Version == 3)
        {
            if (b.Length < Qcow2Format.V3HeaderLength)
            {
                throw Bad($"header truncated ({b.Length} bytes, version 3 needs {Qcow2Format.V3HeaderLength})");
            }

            h.IncompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(b[OffIncompatibleFeatures..]);
            h.CompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(b[OffCompatibleFeatures..]);
            h.AutoclearFeatures = BinaryPrimitives.ReadUInt64BigEndian(b[OffAutoclearFeatures..]);
            var order = BinaryPrimitives.ReadUInt32BigEndian(b[OffRefcountOrder..]);
            if (order > 6)
            {
                throw Bad($"refcount_order {order} too large (at most 6)");
            }

            h.RefcountOrder = (int)order;
            var hl = BinaryPrimitives.ReadUInt32BigEndian(b[OffHeaderLength..]);
            if (hl < Qcow2Format.V3HeaderLength || hl > cs || hl > b.Length)
            {
                throw Bad($"header_length {hl} invalid");
            }

            h.HeaderLength = (int)hl;
            h.CompressionType = hl > OffCompressionType ? b[OffCompressionType] : Qcow2Format.CompressionZlib;
        }
        else
        {
            h.HeaderLength = Qcow2Format.V2HeaderLength;
            h.RefcountOrder = 4;
        }

        h.ReadFixedFields(b, fileLength, Where);
        h.ReadExtensions(b, Where);
        h.ReadBitmapsExtension(Where);
        h.ReadBackingFileName(b, Where);
        h.ValidateFeatures(Where);
        h.ValidateCryptoHeader(fileLength, Where);
        return h;
    }

    private void ReadFixedFields(ReadOnlySpan<byte> b, long fileLength, Func<string, string> where)
    {
        BlockException Bad(string what) => BlockException.Invalid(where(what));
        var cs = ClusterSize;
        var size = BinaryPrimitives.ReadUInt64BigEndian(b[OffSize..]);
        if (size > long.MaxValue / 2)
        {
            throw Bad($"size {size} too large");
        }

        Size = (long)size;
        CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(b[OffCryptMethod..]);
        if (CryptMethod > Qcow2Format.CryptLuks)
        {
            throw BlockException.NotSupported(where($"Unsupported encryption method {CryptMethod}"));
        }

        var l1Size = BinaryPrimitives.ReadUInt32BigEndian(b[OffL1Size..]);
        if ((long)l1Size * 8 > Qcow2Format.MaxL1Bytes)
        {
            throw Bad($"l1_size {l1Size} too large (L1 table over {Qcow2Format.MaxL1Bytes} bytes)");
        }

        if (l1Size < L1EntriesFor(Size, ClusterBits, (IncompatibleFeatures & Qcow2Format.IncompatExtendedL2) != 0))
        {
            throw Bad($"l1_size {l1Size} too small for size {Size}");
        }

        L1Size = (int)l1Size;
        L1TableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[OffL1TableOffset..]);
        CheckTable("l1_table_offset", L1TableOffset, (long)L1Size * 8, fileLength, where);
        RefcountTableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(b[OffRefcountTableOffset..]);
        var rtc = BinaryPrimitives.ReadUInt32BigEndian(b[OffRefcountTableClusters..]);
        if ((long)rtc * cs > Qcow2Format.MaxRefcountTableBytes || rtc == 0)
        {
            throw Bad($"refcount_table_clusters {rtc} invalid");
        }

        RefcountTableClusters = (int)rtc;
        CheckTable("refcount_table_offset", RefcountTableOffset, (long)rtc * cs, fileLength, where);
        // The snapshot table is checked whether or not it has entries, as QEMU's qcow2_validate_table.
        var nbSnapshots = BinaryPrimitives.ReadUInt32BigEndian(b[OffNbSnapshots..]);
        if (nbSnapshots > Qcow2Format.MaxSnapshots)
        {
            throw new BlockException(Errno.EFBIG, where($"Snapshot table too large (nb_snapshots {nbSnapshots})"));
        }

        var snapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(b[OffSnapshotsOffset..]);
        if (snapshotsOffset > (ulong)(long.MaxValue - (nbSnapshots * SnapshotHeaderLength)) || (snapshotsOffset & (ulong)(cs - 1)) != 0)
        {
            throw Bad($"Snapshot table offset invalid (snapshots_offset 0x{snapshotsOffset:x})");
        }

        SnapshotCount = (int)nbSnapshots;
        SnapshotsOffset = (long)snapshotsOffset;
        if (SnapshotCount > 0)
        {
            CheckTable("snapshots_offset", SnapshotsOffset, SnapshotHeaderLength, fileLength, where);
        }
    }

    /// <summary>A table must be cluster aligned, not overlap the header cluster and lie inside the file.</summary>
    private void CheckTable(string field, long offset, long length, long fileLength, Func<string, string> where)
    {
        var cs = ClusterSize;
        if (offset < 0 || (offset & (cs - 1)) != 0)
        {
            throw BlockException.Invalid(where($"{field} 0x{offset:x} is not cluster aligned"));
        }

        if (length > 0 && offset < cs)
        {
            throw BlockException.Invalid(where($"{field} 0x{offset:x} overlaps the header"));
        }

        if (length > 0 && offset > fileLength - length)
        {
            throw BlockException.Invalid(where($"{field} 0x{offset:x} (+{length} bytes) beyond end of file ({fileLength} bytes)"));
        }
    }

    /// <summary>
    /// Reads the extensions after the fixed fields, up to the backing file name when there is one (else
    /// to the end of the header cluster), as QEMU does; one that would reach past that end is refused.
    /// </summary>
    private void ReadExtensions(ReadOnlySpan<byte> b, Func<string, string> where)
    {
        var pos = HeaderLength;
        var backingOffset = BinaryPrimitives.ReadUInt64BigEndian(b[OffBackingFileOffset..]);
        var end = (int)Math.Min((ulong)Math.Min(b.Length, ClusterSize), backingOffset == 0 ? ulong.MaxValue : backingOffset);
        while (pos + 8 <= end)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(b[pos..]);
            var len = BinaryPrimitives.ReadUInt32BigEndian(b[(pos + 4)..]);
            if (type == Qcow2Format.ExtEnd)
            {
                return;
            }

            if (len > end - pos - 8)
            {
                throw BlockException.Invalid(where($"Header extension too large (extension 0x{type:x8} at {pos}, length {len})"));
            }

            Extensions.Add(new Qcow2HeaderExtension(type, b.Slice(pos + 8, (int)len).ToArray()));
            pos += 8 + (int)((len + 7) & ~7u);
        }
    }

    private void ReadBackingFileName(ReadOnlySpan<byte> b, Func<string, string> where)
    {
        var offset = BinaryPrimitives.ReadUInt64BigEndian(b[OffBackingFileOffset..]);
        var size = BinaryPrimitives.ReadUInt32BigEndian(b[OffBackingFileSize..]);
        if (offset == 0 || size == 0)
        {
            // An empty name is no backing file (QEMU reads it as ""), wherever the offset points.
            return;
        }

        if (size > Qcow2Format.MaxBackingFileName || offset > (ulong)Math.Min(b.Length, ClusterSize) - size)
        {
            throw BlockException.Invalid(where($"backing_file_offset 0x{offset:x} / backing_file_size {size} outside the header cluster"));
        }

        // QEMU keeps the name as a C string: it ends at a NUL, and an empty one is no backing file.
        var name = b.Slice((int)offset, (int)size);
        var nul = name.IndexOf((byte)0);
        BackingFile = nul == 0 ? null : Encoding.UTF8.GetString(nul < 0 ? name : name[..nul]);
    }

    private void ValidateFeatures(Func<string, string> where)
    {
        var unknown = IncompatibleFeatures & ~Qcow2Format.IncompatKnown;
        if (unknown != 0)
        {
            var names = new List<string>();
            for (var bit = 0; bit < 64; bit++)
            {
                if ((unknown & (1UL << bit)) != 0)
                {
                    names.Add(FeatureName(0, bit) ?? $"Unknown incompatible feature: {1UL << bit:x}");
                }
            }

            throw BlockException.NotSupported(where("unsupported incompatible features: " + string.Join(", ", names)));
        }

        if (Version == 2 && RefcountOrder != 4)
        {
            throw BlockException.Invalid(where("refcount_order must be 4 in version 2"));
        }

        if (CompressionType > Qcow2Format.CompressionZstd)
        {
            throw BlockException.NotSupported(where($"unknown compression_type {CompressionType}"));
        }

        if (CompressionType != Qcow2Format.CompressionZlib && (IncompatibleFeatures & Qcow2Format.IncompatCompression) == 0)
        {
            throw BlockException.Invalid(where("compression_type is set but the compression type incompatible bit is not"));
        }

        if (ExtendedL2 && ClusterBits < 14)
        {
            throw BlockException.Invalid(where("extended_l2 needs a cluster size of at least 16 KiB"));
        }

        if (DataFileRaw && !HasDataFile)
        {
            throw BlockException.Invalid(where("data-file-raw is set without an external data file"));
        }
    }

    /// <summary>The crypto header extension: only with LUKS encryption, 16 bytes, a cluster-aligned region inside the file (QEMU's checks and words).</summary>
    private void ValidateCryptoHeader(long fileLength, Func<string, string> where)
    {
        var ext = Extensions.Find(x => x.Type == Qcow2Format.ExtCrypto);
        if (ext is null)
        {
            if (CryptMethod == Qcow2Format.CryptLuks)
            {
                throw BlockException.Invalid(where($"Missing CRYPTO header for crypt method {CryptMethod}"));
            }

            return;
        }

        if (CryptMethod != Qcow2Format.CryptLuks)
        {
            throw BlockException.Invalid(where("CRYPTO header extension only expected with LUKS encryption method"));
        }

        if (ext.Data.Length != 16)
        {
            throw BlockException.Invalid(where($"CRYPTO header extension size {ext.Data.Length}, but expected size 16"));
        }

        var (offset, length) = CryptoHeader!.Value;
        if (offset % ClusterSize != 0)
        {
            throw BlockException.Invalid(where($"Encryption header offset '{(ulong)offset}' is not a multiple of cluster size '{ClusterSize}'"));
        }

        if (offset < ClusterSize || length <= 0 || length > fileLength || offset > fileLength - length)
        {
            throw BlockException.Invalid(where($"Encryption header at 0x{(ulong)offset:x} (+{(ulong)length} bytes) lies outside the image file ({fileLength} bytes)"));
        }
    }

    /// <summary>The name of a feature from the feature name table extension, when the image has one.</summary>
    public string? FeatureName(int type, int bit)
    {
        var table = Extensions.Find(x => x.Type == Qcow2Format.ExtFeatureTable);
        if (table is null)
        {
            return null;
        }

        for (var i = 0; i + 48 <= table.Data.Length; i += 48)
        {
            if (table.Data[i] == type && table.Data[i + 1] == bit)
            {
                return Encoding.UTF8.GetString(table.Data.AsSpan(i + 2, 46)).TrimEnd('\0');
            }
        }

        return null;
    }
}
