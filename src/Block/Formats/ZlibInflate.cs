using System.IO.Compression;

namespace ExportServer.Block.Formats;

/// <summary>Inflating one whole zlib stream (RFC 1950) into a buffer of the exact size it must fill: cloop blocks, dmg chunks.</summary>
internal static class ZlibInflate
{
    /// <summary>
    /// Inflates <paramref name="input"/> into <paramref name="output"/>; false when the stream is not
    /// valid zlib or does not inflate to exactly <paramref name="output"/>'s length.
    /// </summary>
    public static unsafe bool Exact(ReadOnlySpan<byte> input, Span<byte> output)
    {
        try
        {
            fixed (byte* p = input)
            {
                using var source = new UnmanagedMemoryStream(p, input.Length);
                using var inflater = new ZLibStream(source, CompressionMode.Decompress);
                var total = 0;
                int read;
                while (total < output.Length && (read = inflater.Read(output[total..])) > 0)
                {
                    total += read;
                }

                Span<byte> extra = stackalloc byte[1];
                return total == output.Length && inflater.Read(extra) == 0;
            }
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }
}
