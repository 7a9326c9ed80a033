using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

internal sealed partial class Qcow2Header
{
    /// <summary>
    /// Serialises the whole header cluster: fixed fields, extensions in order, the end marker and the
    /// backing file name right after it. <paramref name="b"/> is one cluster and is zeroed first.
    /// </summary>
    public void Write(Span<byte> b)
    {
        b.Clear();
        BinaryPrimitives.WriteUInt32BigEndian(b[OffMagic..], Qcow2Format.Magic);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffVersion..], (uint)Version);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffClusterBits..], (uint)ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(b[OffSize..], (ulong)Size);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffCryptMethod..], CryptMethod);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffL1Size..], (uint)L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(b[OffL1TableOffset..], (ulong)L1TableOffset);
        BinaryPrimitives.WriteUInt64BigEndian(b[OffRefcountTableOffset..], (ulong)RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffRefcountTableClusters..], (uint)RefcountTableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffNbSnapshots..], (uint)SnapshotCount);
        BinaryPrimitives.WriteUInt64BigEndian(b[OffSnapshotsOffset..], (ulong)SnapshotsOffset);
        var pos = Qcow2Format.V2HeaderLength;
        if (Version >= 3)
        {
            BinaryPrimitives.WriteUInt64BigEndian(b[OffIncompatibleFeatures..], IncompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(b[OffCompatibleFeatures..], CompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(b[OffAutoclearFeatures..], AutoclearFeatures);
            BinaryPrimitives.WriteUInt32BigEndian(b[OffRefcountOrder..], (uint)RefcountOrder);
            BinaryPrimitives.WriteUInt32BigEndian(b[OffHeaderLength..], (uint)HeaderLength);
            if (HeaderLength > OffCompressionType)
            {
                b[OffCompressionType] = CompressionType;
            }

            pos = HeaderLength;
        }

        foreach (var e in Extensions)
        {
            if (pos + e.EncodedLength + 8 > b.Length)
            {
                throw BlockException.Invalid("qcow2: header extensions do not fit in the header cluster");
            }

            BinaryPrimitives.WriteUInt32BigEndian(b[pos..], e.Type);
            BinaryPrimitives.WriteUInt32BigEndian(b[(pos + 4)..], (uint)e.Data.Length);
            e.Data.CopyTo(b[(pos + 8)..]);
            pos += e.EncodedLength;
        }

        pos += 8; // end marker, already zero
        if (BackingFile is { } backing)
        {
            var name = Encoding.UTF8.GetBytes(backing);
            if (name.Length > Qcow2Format.MaxBackingFileName || pos + name.Length > b.Length)
            {
                throw BlockException.Invalid("qcow2: backing file name too long for the header");
            }

            name.CopyTo(b[pos..]);
            BinaryPrimitives.WriteUInt64BigEndian(b[OffBackingFileOffset..], (ulong)pos);
            BinaryPrimitives.WriteUInt32BigEndian(b[OffBackingFileSize..], (uint)name.Length);
        }
    }

    /// <summary>The 8-byte incompatible-features field alone, for the dirty and corrupt bits.</summary>
    public static void WriteIncompatibleFeatures(Span<byte> b, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(b, value);
}
