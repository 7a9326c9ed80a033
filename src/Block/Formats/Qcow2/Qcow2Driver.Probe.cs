using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

public sealed partial class Qcow2Driver : IFormatProbe
{
    /// <summary>The magic and a version this driver opens (2 or 3); version 1 is the older qcow format.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        head.Length >= 8 &&
        BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Format.Magic &&
        BinaryPrimitives.ReadUInt32BigEndian(head[4..]) is 2 or 3
            ? 100
            : 0;
}
