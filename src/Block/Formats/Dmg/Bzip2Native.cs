using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Dmg;

/// <summary>libbz2 (Debian libbz2-1.0): the one-shot decompressor, for dmg's bzip2 chunks.</summary>
internal static unsafe partial class Bzip2Native
{
    private const string Library = "libbz2.so.1.0";

    public const int Ok = 0;

    [LibraryImport(Library, EntryPoint = "BZ2_bzBuffToBuffDecompress")]
    private static partial int BuffToBuffDecompress(byte* dest, uint* destLength, byte* source, uint sourceLength, int small, int verbosity);

    /// <summary>Decompresses <paramref name="input"/> into <paramref name="output"/>; false unless it is one valid stream of exactly that length.</summary>
    public static bool Exact(ReadOnlySpan<byte> input, Span<byte> output)
    {
        fixed (byte* src = input)
        fixed (byte* dst = output)
        {
            var length = (uint)output.Length;
            return BuffToBuffDecompress(dst, &length, src, (uint)input.Length, 0, 0) == Ok && length == (uint)output.Length;
        }
    }
}
