using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

internal sealed partial class VmdkDriver : IFormatProbe
{
    private const int Certain = 100;

    /// <summary>
    /// QEMU's vmdk_probe: a sparse magic (KDMV or COWD), or a text whose first line that is neither
    /// a comment nor blank is "version=1", "version=2" or "version=3".
    /// </summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName)
    {
        if (head.Length < 4)
        {
            return 0;
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(head) is VmdkFormat.SparseMagic or VmdkFormat.CowdMagic)
        {
            return Certain;
        }

        var p = head;
        while (p.Length > 0)
        {
            if (p[0] == (byte)'#')
            {
                var eol = p.IndexOf((byte)'\n');
                p = eol < 0 ? [] : p[(eol + 1)..];
                continue;
            }

            if (p[0] == (byte)' ')
            {
                p = p.TrimStart((byte)' ');
                if (p.Length > 0 && p[0] == (byte)'\r')
                {
                    p = p[1..];
                }

                // Only blank lines may come before the version line.
                if (p.Length == 0 || p[0] != (byte)'\n')
                {
                    return 0;
                }

                p = p[1..];
                continue;
            }

            return p.StartsWith("version="u8) && p.Length > 8 && p[8] is (byte)'1' or (byte)'2' or (byte)'3' &&
                   (p[9..].StartsWith("\n"u8) || p[9..].StartsWith("\r\n"u8))
                ? Certain
                : 0;
        }

        return 0;
    }
}
