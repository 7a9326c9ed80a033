using System.Buffers.Binary;

namespace ExportServer.Block.Formats.Probe;

/// <summary>
/// Guesses an image's format from its first bytes (at least 512; fewer are treated as raw unless a
/// magic fits) the way QEMU's probes do, returning QEMU's driver name. Only formats with an
/// unambiguous magic are recognised (and dmg by its file name, as QEMU does); anything else is "raw".
/// </summary>
public static class FormatProbe
{
    /// <summary>Bytes worth reading for <see cref="Probe"/>.</summary>
    public const int ProbeLength = 4096;

    public static string Probe(ReadOnlySpan<byte> head, string? fileName = null)
    {
        if (StartsWith(head, [0x51, 0x46, 0x49, 0xfb]) && head.Length >= 8)
        {
            var version = BinaryPrimitives.ReadUInt32BigEndian(head[4..]);
            if (version is 2 or 3)
            {
                return "qcow2";
            }

            if (version == 1)
            {
                return "qcow";
            }
        }

        if (StartsWith(head, "KDMV"u8) || StartsWith(head, "COWD"u8) || StartsWith(head, "# Disk DescriptorFile"u8))
        {
            return "vmdk";
        }

        if (StartsWith(head, "vhdxfile"u8))
        {
            return "vhdx";
        }

        if (StartsWith(head, "conectix"u8))
        {
            return "vpc";
        }

        if (StartsWith(head, "QED\0"u8))
        {
            return "qed";
        }

        if (StartsWith(head, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]))
        {
            return "luks";
        }

        if ((StartsWith(head, "WithoutFreeSpace"u8) || StartsWith(head, "WithouFreSpacExt"u8)) && head.Length >= 20 &&
            BinaryPrimitives.ReadUInt32LittleEndian(head[16..]) == 2)
        {
            return "parallels";
        }

        // VDI: signature 0xbeda107f (little-endian) at byte 64.
        if (head.Length >= 72 && BinaryPrimitives.ReadUInt32LittleEndian(head[64..]) == 0xbeda107f)
        {
            return "vdi";
        }

        if (StartsWith(head, "Bochs Virtual HD Image"u8))
        {
            return "bochs";
        }

        if (fileName is not null && fileName.EndsWith(".dmg", StringComparison.Ordinal))
        {
            return "dmg";
        }

        return "raw";
    }

    private static bool StartsWith(ReadOnlySpan<byte> head, ReadOnlySpan<byte> magic) =>
        head.Length >= magic.Length && head[..magic.Length].SequenceEqual(magic);
}
