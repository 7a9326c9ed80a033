using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The few zlib (Debian zlib1g) calls needed to write deflate-compressed qcow2 clusters. QEMU inflates
/// them with a 4 KiB window (window bits -12), which System.IO.Compression cannot be told to respect,
/// so the stream is produced by zlib itself with the same parameters.
/// </summary>
internal static unsafe partial class ZlibNative
{
    private const string Library = "libz.so.1";

    public const int Deflated = 8;
    public const int DefaultCompression = -1;
    public const int DefaultStrategy = 0;
    public const int Finish = 4;
    public const int Ok = 0;
    public const int StreamEnd = 1;
    public const int BufError = -5;

    /// <summary>The version string handed to deflateInit2_; zlib checks only its first character.</summary>
    private static ReadOnlySpan<byte> Version => "1.2.13\0"u8;

    /// <summary>zlib's z_stream on LP64 (the layout deflateInit2_ checks through its size argument).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ZStream
    {
        public byte* NextIn;
        public uint AvailIn;
        public nuint TotalIn;
        public byte* NextOut;
        public uint AvailOut;
        public nuint TotalOut;
        public nint Msg;
        public nint State;
        public nint ZAlloc;
        public nint ZFree;
        public nint Opaque;
        public int DataType;
        public nuint Adler;
        public nuint Reserved;
    }

    [LibraryImport(Library, EntryPoint = "deflateInit2_")]
    private static partial int DeflateInit2(ZStream* stream, int level, int method, int windowBits, int memLevel, int strategy, byte* version, int streamSize);

    [LibraryImport(Library, EntryPoint = "deflate")]
    public static partial int Deflate(ZStream* stream, int flush);

    [LibraryImport(Library, EntryPoint = "deflateEnd")]
    public static partial int DeflateEnd(ZStream* stream);

    public static int DeflateInit(ZStream* stream, int level, int windowBits, int memLevel)
    {
        fixed (byte* v = Version)
        {
            return DeflateInit2(stream, level, Deflated, windowBits, memLevel, DefaultStrategy, v, sizeof(ZStream));
        }
    }
}
