using System.Runtime.InteropServices;

namespace ExportServer.Server.Commands;

/// <summary>The bytes a file occupies on disk (stat's st_blocks × 512), ImageInfo's actual-size.</summary>
internal static partial class FileAllocation
{
    // struct stat on x86-64 and aarch64 Linux: 144 / 128 bytes; st_blocks at offset 64 / 72.
    private const int StatSize = 256;

    public static long? Get(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        Span<byte> buf = stackalloc byte[StatSize];
        if (stat(path, ref MemoryMarshal.GetReference(buf)) != 0)
        {
            return null;
        }

        var offset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 64 : 72;
        return BitConverter.ToInt64(buf.Slice(offset, 8)) * 512;
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int stat(string path, ref byte buf);
}
