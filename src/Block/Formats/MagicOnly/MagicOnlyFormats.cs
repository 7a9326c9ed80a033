using System.Buffers.Binary;

namespace ExportServer.Block.Formats.MagicOnly;

/// <summary>
/// Formats we recognise but do not implement, so that opening one says what it is instead of
/// treating it as raw. One table rather than a folder each: a folder under Formats/ is a format we
/// can open, and when one of these gets a driver its probe moves into its folder and the row goes
/// (a driver's probe already takes precedence over a row of the same name). Scores as QEMU's probes.
/// </summary>
internal static class MagicOnlyFormats
{
    private const int Certain = 100;

    public static IReadOnlyList<MagicOnlyProbe> All { get; } =
    [
        new("qcow", Certain, (h, _) => StartsWith(h, [0x51, 0x46, 0x49, 0xfb]) && h.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(h[4..]) == 1),
    ];

    private static bool StartsWith(ReadOnlySpan<byte> head, ReadOnlySpan<byte> magic) =>
        head.Length >= magic.Length && head[..magic.Length].SequenceEqual(magic);
}
