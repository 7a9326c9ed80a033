using System.IO.Compression;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Compressed cluster codecs: zlib type is raw deflate (no zlib header), zstd is one zstd frame.
/// The stored bytes are whole 512-byte sectors, so input may carry trailing garbage after the stream.
/// </summary>
internal static class Qcow2Compression
{
    /// <summary>Deflate parameters of QEMU's qcow2 writer: a 4 KiB window (raw deflate) and memLevel 9.</summary>
    private const int DeflateWindowBits = -12;
    private const int DeflateMemLevel = 9;

    /// <summary>
    /// Compresses <paramref name="input"/> into <paramref name="output"/>; returns the compressed
    /// length, or -1 when the result does not fit (the caller stores the data uncompressed).
    /// </summary>
    public static int Compress(byte type, ReadOnlySpan<byte> input, Span<byte> output) =>
        type == Qcow2Format.CompressionZstd ? CompressZstd(input, output) : CompressDeflate(input, output);

    private static unsafe int CompressDeflate(ReadOnlySpan<byte> input, Span<byte> output)
    {
        var stream = default(ZlibNative.ZStream);
        if (ZlibNative.DeflateInit(&stream, ZlibNative.DefaultCompression, DeflateWindowBits, DeflateMemLevel) != ZlibNative.Ok)
        {
            throw BlockException.Io("qcow2: cannot initialise deflate");
        }

        try
        {
            fixed (byte* src = input)
            fixed (byte* dst = output)
            {
                stream.NextIn = src;
                stream.AvailIn = (uint)input.Length;
                stream.NextOut = dst;
                stream.AvailOut = (uint)output.Length;
                var rc = ZlibNative.Deflate(&stream, ZlibNative.Finish);
                if (rc == ZlibNative.StreamEnd)
                {
                    return output.Length - (int)stream.AvailOut;
                }

                // Z_OK or Z_BUF_ERROR with Z_FINISH: the output space ran out.
                return rc is ZlibNative.Ok or ZlibNative.BufError ? -1 : throw BlockException.Io($"qcow2: deflate failed ({rc})");
            }
        }
        finally
        {
            ZlibNative.DeflateEnd(&stream);
        }
    }

    private static unsafe int CompressZstd(ReadOnlySpan<byte> input, Span<byte> output)
    {
        fixed (byte* src = input)
        fixed (byte* dst = output)
        {
            var n = ZstdNative.Compress(dst, (nuint)output.Length, src, (nuint)input.Length, ZstdNative.DefaultLevel);

            // Any error here is "destination too small" for valid input: store uncompressed.
            return ZstdNative.IsError(n) != 0 ? -1 : (int)n;
        }
    }

    /// <summary>Decompresses exactly <paramref name="output"/>.Length bytes or throws EIO.</summary>
    public static void Decompress(byte type, ReadOnlySpan<byte> input, Span<byte> output)
    {
        if (type == Qcow2Format.CompressionZstd)
        {
            DecompressZstd(input, output);
            return;
        }

        unsafe
        {
            fixed (byte* p = input)
            {
                using var ms = new UnmanagedMemoryStream(p, input.Length);
                using var inflate = new DeflateStream(ms, CompressionMode.Decompress);
                var done = 0;
                while (done < output.Length)
                {
                    int n;
                    try
                    {
                        n = inflate.Read(output[done..]);
                    }
                    catch (InvalidDataException e)
                    {
                        throw BlockException.Io("qcow2: compressed cluster is not valid deflate data", e);
                    }

                    if (n == 0)
                    {
                        throw BlockException.Io($"qcow2: compressed cluster inflates to {done} bytes, not {output.Length}");
                    }

                    done += n;
                }
            }
        }
    }

    private static unsafe void DecompressZstd(ReadOnlySpan<byte> input, Span<byte> output)
    {
        fixed (byte* src = input)
        fixed (byte* dst = output)
        {
            var frame = ZstdNative.FindFrameCompressedSize(src, (nuint)input.Length);
            if (ZstdNative.IsError(frame) != 0)
            {
                throw BlockException.Io("qcow2: compressed cluster is not a valid zstd frame");
            }

            var n = ZstdNative.Decompress(dst, (nuint)output.Length, src, frame);
            if (ZstdNative.IsError(n) != 0 || n != (nuint)output.Length)
            {
                throw BlockException.Io("qcow2: zstd cluster does not decompress to one cluster");
            }
        }
    }
}
