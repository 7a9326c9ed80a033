using System.IO.Compression;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Compressed cluster codecs: zlib type is raw deflate (no zlib header), zstd is one zstd frame.
/// The stored bytes are whole 512-byte sectors, so input may carry trailing garbage after the stream.
/// </summary>
internal static class Qcow2Compression
{
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
