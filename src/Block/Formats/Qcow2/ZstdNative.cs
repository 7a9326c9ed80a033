using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>The few libzstd (Debian libzstd1) calls needed to read zstd-compressed qcow2 clusters.</summary>
internal static partial class ZstdNative
{
    private const string Library = "libzstd.so.1";

    [LibraryImport(Library, EntryPoint = "ZSTD_findFrameCompressedSize")]
    public static unsafe partial nuint FindFrameCompressedSize(byte* src, nuint srcSize);

    [LibraryImport(Library, EntryPoint = "ZSTD_decompress")]
    public static unsafe partial nuint Decompress(byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

    [LibraryImport(Library, EntryPoint = "ZSTD_isError")]
    public static partial uint IsError(nuint code);
}
