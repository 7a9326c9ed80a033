using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>The few libzstd (Debian libzstd1) calls needed to read and write zstd-compressed qcow2 clusters.</summary>
internal static partial class ZstdNative
{
    private const string Library = "libzstd.so.1";

    /// <summary>ZSTD_CLEVEL_DEFAULT, the level QEMU compresses clusters with.</summary>
    public const int DefaultLevel = 3;

    [LibraryImport(Library, EntryPoint = "ZSTD_findFrameCompressedSize")]
    public static unsafe partial nuint FindFrameCompressedSize(byte* src, nuint srcSize);

    [LibraryImport(Library, EntryPoint = "ZSTD_decompress")]
    public static unsafe partial nuint Decompress(byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

    [LibraryImport(Library, EntryPoint = "ZSTD_compress")]
    public static unsafe partial nuint Compress(byte* dst, nuint dstCapacity, byte* src, nuint srcSize, int level);

    [LibraryImport(Library, EntryPoint = "ZSTD_isError")]
    public static partial uint IsError(nuint code);
}
